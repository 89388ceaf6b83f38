package s3fleet_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/s3fleet/s3fleet"
)

// Download one object and wait for it, as s3transfer's
// ProcessPoolDownloader does: the fleet's workers fetch it, and Result
// returns once every byte is on disk and checked.
func Example() {
	ctx := context.Background()
	opts, err := s3fleet.OptionsFromEnv() // S3FLEET_REDIS, S3FLEET_ENDPOINT, …
	if err != nil {
		log.Fatal(err)
	}
	c, err := s3fleet.Connect(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)

	t, err := c.Download(ctx, "s3://bkt/reports/2026.csv", filepath.Join(dir, "2026.csv"))
	if err != nil {
		log.Fatal(err)
	}
	rec, err := t.Result(ctx)
	if err != nil {
		log.Fatal(err) // names the object and the cause
	}
	fmt.Println(rec.State, rec.Size, "bytes, checked:", rec.Check)
	// Output: success 1000 bytes, checked: crc32
}

// Submit a prefix of many objects as one job, follow its progress, and
// list its objects.
func ExampleClient_Submit() {
	ctx := context.Background()
	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	c, err := s3fleet.Connect(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)

	j, err := c.Submit(ctx, s3fleet.Job{Sources: []string{"s3://bkt/logs/"}, Dest: dir + "/", Include: []string{"0*.log"}})
	if err != nil {
		log.Fatal(err)
	}
	var last s3fleet.Progress
	p, err := j.Wait(ctx, s3fleet.OnProgress(func(p s3fleet.Progress) {
		last = p // a progress bar would draw p.BytesDone+p.BytesInFlight of p.BytesTotal
	}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d of %d objects landed, %d bytes (progress told: %d bytes, done %v)\n",
		p.Succeeded, p.Objects, p.BytesDone, last.BytesDone, last.Done)
	n := 0
	for rec, err := range j.Objects(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		if rec.State == s3fleet.Success {
			n++
		}
	}
	fmt.Println(n, "records")
	// Output:
	// 10 of 10 objects landed, 1045 bytes (progress told: 1045 bytes, done true)
	// 10 records
}

// Cancel a download in flight: Result then says so.
func ExampleTransfer_Cancel() {
	ctx := context.Background()
	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	c, err := s3fleet.Connect(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)

	t, err := c.Download(ctx, "s3://bkt/slow/big.bin", filepath.Join(dir, "big.bin"))
	if err != nil {
		log.Fatal(err)
	}
	if err := t.Cancel(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = t.Result(ctx)
	fmt.Println(errors.Is(err, s3fleet.ErrCancelled))
	st, _ := t.State(ctx)
	fmt.Println(st)
	// Output:
	// true
	// cancelled
}

// Run the fleet inside this program, with no Redis: the same API, the
// same task code, workers in this process.
func ExampleLocal() {
	ctx := context.Background()
	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	opts.Concurrency = 8
	c, err := s3fleet.Local(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)

	t, err := c.Download(ctx, "s3://bkt/logs/big.log", filepath.Join(dir, "big.log"))
	if err != nil {
		log.Fatal(err)
	}
	rec, err := t.Result(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.State, rec.Size)
	// Output: success 3145728
}
