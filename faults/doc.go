// Package faults is s3fleet's fault suite: the built enqueue and worker
// binaries run as processes against a real redis-server and S3 server
// (versitygw), while the tests kill workers, restart or freeze Redis, break
// S3 responses through a fault proxy, overwrite sources, fill the disk, kill
// the enqueuer, load the fleet with tens of thousands of objects, spread it
// over network namespaces, forge tasks and grep everything for secrets.
// Each test asserts that every object either lands with every byte right or
// is reported failed with its cause, and prints what it injected and the
// figures it measured.
//
// The suite takes about twenty minutes and needs root for its namespace and
// tmpfs tests (they skip without it), so it runs only when S3FLEET_FAULTS=1
// is set: `make test-faults`.
package faults
