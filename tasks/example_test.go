package tasks_test

import (
	"fmt"

	"github.com/s3fleet/s3fleet/tasks"
)

// ExampleNewChunkTask shows the wire contract of a chunk: a JSON payload of
// data only, on the chunks queue, with an ID that makes a re-enqueue a
// no-op.
func ExampleNewChunkTask() {
	task, err := tasks.NewChunkTask(nil, tasks.ChunkPayload{Job: "logs-2026", Transfer: "3f2a", Gen: 1, Object: tasks.Object{Bucket: "bucket", Key: "big.bin", ETag: `"9b2c"`, Size: 20 << 20}, Chunks: 3, Chunk: 1, First: 8 << 20, Last: 16<<20 - 1, Dest: "/data/big.bin", CRC: "CRC64NVME"})
	if err != nil {
		panic(err)
	}
	fmt.Println(task.Type())
	fmt.Println(string(task.Payload()))
	fmt.Println(tasks.ChunkTaskID("3f2a", 1, 0, 1))
	// Output:
	// s3fleet:chunk
	// {"job":"logs-2026","transfer":"3f2a","gen":1,"bucket":"bucket","key":"big.bin","etag":"\"9b2c\"","size":20971520,"chunks":3,"chunk":1,"first":8388608,"last":16777215,"dest":"/data/big.bin","crc":"CRC64NVME"}
	// chunk:3f2a:1:1
}

// ExampleNewAssembleTask shows the assembler task enqueued when an object's
// last chunk lands: one per transfer generation.
func ExampleNewAssembleTask() {
	task, err := tasks.NewAssembleTask(nil, tasks.AssemblePayload{
		Job: "logs-2026", Transfer: "3f2a", Gen: 1, Bucket: "bucket", Key: "big.bin", Dest: "/data/big.bin", Size: 20 << 20,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(task.Type(), tasks.AssembleTaskID("3f2a", 1, 0))
	// Output:
	// s3fleet:assemble assemble:3f2a:1
}
