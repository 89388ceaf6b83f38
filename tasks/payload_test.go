package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/ledger"
)

// chunkPayload is a typical chunk: a long key, a version, an ETag.
func chunkPayload() ChunkPayload {
	return ChunkPayload{Job: "20261123-212903-f1bc73", Transfer: "b8c7a562fa008ecb049d563c", Gen: 1, Object: Object{Bucket: "datasets", Key: "logs/2026/11/23/host-0042/part-00017.parquet", VersionID: "3HL4kqtJvjVBH40Nrjfkd", ETag: `"9b2cf535f27731c974343645a3985328-128"`, Size: 1 << 30}, Chunks: 128, Chunk: 17, First: 17 << 23, Last: 18<<23 - 1, Dest: "/data/logs/2026/11/23/host-0042/part-00017.parquet", CRC: "CRC64NVME"}
}

// batchPayload is a full batch of 100 small objects.
func batchPayload() BatchPayload {
	p := BatchPayload{Job: "20261123-212903-f1bc73"}
	for i := range 100 {
		p.Objects = append(p.Objects, BatchObject{Transfer: fmt.Sprintf("%024x", i), Gen: 1, Dest: fmt.Sprintf("/data/logs/2026/11/23/small-%05d.json", i), Object: Object{Bucket: "datasets", Key: fmt.Sprintf("logs/2026/11/23/small-%05d.json", i), ETag: `"9b2cf535f27731c974343645a3985328"`, Size: 16 << 10}, LastModified: 1763900000000})
	}
	return p
}

// TestPayloadsRoundTrip checks that what a task carries decodes to what
// was encoded (the benchmarks below time the same paths).
func TestPayloadsRoundTrip(t *testing.T) {
	c := chunkPayload()
	task, err := NewChunkTask(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	var c2 ChunkPayload
	if err := json.Unmarshal(task.Payload(), &c2); err != nil || !reflect.DeepEqual(c, c2) {
		t.Fatalf("chunk payload %+v, %v; want %+v", c2, err, c)
	}
	b := batchPayload()
	btask, err := NewBatchTask(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := DecodeBatch(btask.Payload())
	if err != nil || !reflect.DeepEqual(b, b2) {
		t.Fatalf("batch payload differs after a round trip: %v", err)
	}
}

func BenchmarkChunkPayloadEncode(b *testing.B) {
	p := chunkPayload()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewChunkTask(nil, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChunkPayloadDecode(b *testing.B) {
	task, _ := NewChunkTask(nil, chunkPayload())
	raw := task.Payload()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		var p ChunkPayload
		if err := json.Unmarshal(raw, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBatchPayloadEncode(b *testing.B) {
	p := batchPayload()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewBatchTask(nil, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBatchPayloadDecode(b *testing.B) {
	task, _ := NewBatchTask(nil, batchPayload())
	raw := task.Payload()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBatchObjectSizes: only a copy that passes through the worker's
// memory is bounded; a delete or a server-side copy of any size is not.
func TestBatchObjectSizes(t *testing.T) {
	big := Object{Bucket: "bkt", Key: "k", ETag: `"e"`, Size: 1 << 30}
	for _, o := range []BatchObject{
		{Transfer: "x", Gen: 1, Object: big, Dest: "s3://bkt/k", Delete: true},
		{Transfer: "x", Gen: 1, Object: big, Dest: "s3://bkt/copy", ServerSide: true},
	} {
		if err := o.validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if err := (BatchObject{Transfer: "x", Gen: 1, Object: big, Dest: "s3://bkt/copy"}).validate(); err == nil {
		t.Error("a 1 GiB object copied whole through memory was taken")
	}
}

// TestListPayloadValidate: a list task names a job, a host, absolute
// sources and an S3 destination; anything else is refused.
func TestListPayloadValidate(t *testing.T) {
	good := ListPayload{Job: "j", On: "host-a", Sources: []string{"/data/out/"}, Dest: "s3://b/p/",
		Write: &ledger.Write{StorageClass: "STANDARD_IA"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("a payload an enqueuer writes: %v", err)
	}
	task, _, err := NewListTask(nil, good)
	if err != nil {
		t.Fatal(err)
	}
	var back ListPayload
	if err := json.Unmarshal(task.Payload(), &back); err != nil || !reflect.DeepEqual(back, good) {
		t.Fatalf("list payload %+v, %v; want %+v", back, err, good)
	}
	for name, mod := range map[string]func(*ListPayload){
		"no job":     func(p *ListPayload) { p.Job = "" },
		"bad host":   func(p *ListPayload) { p.On = "a b" },
		"relative":   func(p *ListPayload) { p.Sources = []string{"data/out"} },
		"unclean":    func(p *ListPayload) { p.Sources = []string{"/data/../etc"} },
		"local dest": func(p *ListPayload) { p.Dest = "/tmp/x/" },
		"bad write":  func(p *ListPayload) { p.Write = &ledger.Write{SSE: "rot13"} },
		"no sources": func(p *ListPayload) { p.Sources = nil },
	} {
		p := good
		mod(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, p)
		}
	}
}

// TestListHandlerRefusesOtherHosts: a list task for another host's files
// (forged, or misrouted) is refused before anything is walked.
func TestListHandlerRefusesOtherHosts(t *testing.T) {
	task, _, err := NewListTask(nil, ListPayload{Job: "j", On: "host-a", Sources: []string{"/data/"}, Dest: "s3://b/p/"})
	if err != nil {
		t.Fatal(err)
	}
	h := &ListHandler{Host: "host-b", Submit: func(context.Context, ListPayload) error {
		t.Error("host-b walked host-a's files")
		return nil
	}}
	if err := h.ProcessTask(context.Background(), task); !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "host host-a's files") {
		t.Errorf("ProcessTask: %v, want a refusal naming the host", err)
	}
}
