# s3fleet — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/.bin
VERSITYGW_VERSION := v1.8.0
VERSITYGW := $(BIN)/versitygw
export S3FLEET_VERSITYGW ?= $(VERSITYGW)
# MinIO, the second S3 server of tests: source only (no more binaries), and
# the module proxy serves none of its RELEASE.* tags, so a pseudo-version:
# the last commit of the (now unmaintained) repository, 2026-02-12.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO := $(BIN)/minio
export S3FLEET_MINIO ?= $(MINIO)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build enqueue and worker into bin/
	$(GO) build -o bin/ ./cmd/...

INSTALL_DIR ?= $(shell $(GO) env GOPATH)/bin

.PHONY: install
install: ## install the programs as s3fleet-enqueue and s3fleet-worker into INSTALL_DIR (default: $(go env GOPATH)/bin)
	@mkdir -p $(INSTALL_DIR)
	$(GO) build -o $(INSTALL_DIR)/s3fleet-enqueue ./cmd/enqueue
	$(GO) build -o $(INSTALL_DIR)/s3fleet-worker ./cmd/worker
	@echo "installed $(INSTALL_DIR)/s3fleet-enqueue and $(INSTALL_DIR)/s3fleet-worker"

$(VERSITYGW):
	@mkdir -p $(BIN)
	@echo "building versitygw $(VERSITYGW_VERSION) (the S3 server of tests and the demo; once, cached in .bin/)"
	GOBIN=$(BIN) GOFLAGS=-buildvcs=false $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

# ~5 min and ~1.5 GB of RAM on 2 cores, once: its cmd package is huge and
# compiles on one core.
$(MINIO):
	@mkdir -p $(BIN)
	@echo "building minio $(MINIO_VERSION) from source (the second S3 server of tests; ~5 min once, cached in .bin/)"
	GOBIN=$(BIN) GOFLAGS=-buildvcs=false CGO_ENABLED=0 $(GO) install -trimpath \
		-ldflags "-s -w -X github.com/minio/minio/cmd.ReleaseTag=$(MINIO_VERSION)" github.com/minio/minio@$(MINIO_VERSION)

.PHONY: tools
tools: $(VERSITYGW) ## build the pinned S3 server (versitygw) into .bin/ and install redis-server if missing
	@./scripts/install-redis.sh

.PHONY: test-tools
test-tools: tools $(MINIO) ## tools, and MinIO, the tests' second S3 server (~5 min once, cached in .bin/)

.PHONY: test
test: test-tools ## every test, with -race, against a real redis-server, versitygw and MinIO
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	S3FLEET_REDIS_SHARDS=3 $(GO) test -race -count=1 -timeout 10m ./ledger/ ./worker/
	cd bench/suite && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 5m ./...
	cd deploy/validate && $(GO) vet ./... && $(GO) test -count=1 ./...

.PHONY: test-faults
test-faults: tools ## the fault suite: kills, outages, S3 faults, disk full, load, network namespaces (~15 min; root for netns and tmpfs)
	S3FLEET_FAULTS=1 $(GO) test -race -count=1 -timeout 40m -v ./faults/ 2>&1 | tee faults.log | grep --line-buffered -E '^(=== RUN|--- |    [a-z_]+_test.go|  Test|PASS|FAIL|ok|faults:)' ; test $${PIPESTATUS[0]} -eq 0

.PHONY: test-short
test-short: tools ## the fast tiers only (no end-to-end runs of the binaries)
	$(GO) test -race -short -count=1 ./...

.PHONY: bench
bench: tools ## s3fleet (1, 2, 4 workers) against s5cmd, the SDK, s3transfer, boto3, rclone and a plain loop, every direction, plain HTTP and HTTPS: bench/results.md and .png (40–50 min)
	bench/suite/run.sh full

.PHONY: bench-quick
bench-quick: tools ## the 1 GiB comparison with s5cmd alone, plain HTTP and HTTPS (~3 min)
	bench/suite/run.sh quick

.PHONY: bench-copy
bench-copy: tools ## the suite's uploads and copies on plain HTTP: 1 GiB uploaded, copied across endpoints and server-side, 10,000 small objects copied; s3fleet 2 workers beside its peers and the ceilings, 2 runs (~5 min)
	bench/suite/run.sh full -cells 'upload/big/loopback,copy/big/loopback,server-copy/*/loopback' -fleet-workers 2 -runs 2 -out bench/out/results-copy.md -chart bench/out/results-copy.png

.PHONY: bench-pipeline
bench-pipeline: tools ## the fleet alone: one 1 GiB object with 1, 2 and 4 worker processes, MB/s, CPU and peak RSS (~1 min)
	bench/suite/run.sh full -cells 'big/loopback/durable:3' -contenders '^s3fleet' -out bench/out/results-pipeline.md

.PHONY: bench-scale
bench-scale: tools ## scale-out: 1, 2, 4, 8 worker hosts (network namespaces, links capped with tbf; root), MB/s, efficiency, CPU and Redis calls: bench/results-scale.md and .png (~9 min)
	bench/suite/run.sh scale

.PHONY: gobench
gobench: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./chunker ./assembler ./tasks ./checksum

.PHONY: fuzz
fuzz: ## fuzz URL parsing, key mapping and chunk splitting for 30 s each (seeds in testdata/)
	$(GO) test -run '^$$' -fuzz FuzzParseS3URL -fuzztime 30s ./location
	$(GO) test -run '^$$' -fuzz FuzzTarget -fuzztime 30s ./location
	$(GO) test -run '^$$' -fuzz FuzzPlan -fuzztime 30s ./chunker

.PHONY: demo
demo: tools build ## the whole fleet end to end on local servers with sample data
	./demo/run.sh

.PHONY: lint
lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

.PHONY: tidy-check
tidy-check: ## go.mod and go.sum are tidy
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

.PHONY: clean
clean: ## remove build output (keeps the cached .bin/)
	rm -rf bin .demo
