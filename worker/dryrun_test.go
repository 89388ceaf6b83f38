package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/fleettest"
)

// TestDryRunPlansEachObject: a dry run reports each object with what
// enqueue would do with it, and records and writes nothing.
func TestDryRunPlansEachObject(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	for _, k := range []string{"d/new.bin", "d/there.bin", "d/skip.tmp"} {
		f.S3.PutRandom(t, "bkt", k, 3<<20, false)
	}
	dest := t.TempDir()
	if err := os.WriteFile(filepath.Join(dest, "there.bin"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := fleettest.NewClient(t, f.Config())
	var mu sync.Mutex
	got := map[string]enqueuer.PlannedObject{}
	req := fleettest.Request("s3://bkt/d/", dest+"/")
	req.DryRun, req.Exclude = true, []string{"*.tmp"}
	req.Planned = func(p enqueuer.PlannedObject) {
		mu.Lock()
		got[p.Source] = p
		mu.Unlock()
	}
	sum, err := c.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"s3://bkt/d/new.bin": "download", "s3://bkt/d/there.bin": "refuse", "s3://bkt/d/skip.tmp": "filter"}
	for src, action := range want {
		if p := got[src]; p.Action != action || (action == "refuse" && p.Cause == "") {
			t.Errorf("%s: planned %+v, want %s", src, p, action)
		}
	}
	if len(got) != len(want) || sum.New != 1 || sum.Refused != 1 || sum.Filtered != 1 {
		t.Errorf("planned %v, summary %+v", got, sum)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "there.bin")); string(b) != "mine" {
		t.Error("the dry run touched an existing file")
	}
	if _, err := os.Stat(filepath.Join(dest, "new.bin")); !os.IsNotExist(err) {
		t.Error("the dry run wrote a file")
	}
}
