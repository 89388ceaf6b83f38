package worker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestUploadListedOnHost: an upload of an --on job whose tree the enqueuer
// cannot see (it does not exist when the job is enqueued) is listed by a
// list task on that host's worker, and its files land; host-b, which has
// no allow_source, would fail any task of it. A tree missing on the host
// ends the job with the cause, and the same job enqueued again once it is
// there lists it; the allow_source root itself can be listed; a cancel
// before the host's worker runs ends the job and removes its list task; a
// relative path is a usage error.
func TestUploadListedOnHost(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "upl")
	root := t.TempDir()
	tree := filepath.Join(root, "tree")
	a, b, here := f.Config(), f.Config(), f.Config()
	a.Host, a.AllowSource, a.AllowWrite = "host-a", []string{root}, []string{"s3://upl/"}
	b.Host, b.AllowWrite = "host-b", []string{"s3://upl/"}
	here.Host = "enqueuer-host"
	c := fleettest.NewClient(t, here)
	ctx := context.Background()

	req := fleettest.Request(tree+"/", "s3://upl/t/")
	req.On = "host-a"
	sum, err := c.Submit(ctx, req)
	if err != nil {
		t.Fatalf("enqueue a tree only host-a has: %v", err)
	}
	if sum.ListedOn != "host-a" || sum.Objects != 0 {
		t.Errorf("summary %+v, want the listing left to host-a", sum)
	}
	files := map[string][]byte{"a.txt": randomBytes(t, 700), "sub/big.bin": randomBytes(t, 12*mib+3)}
	testenv.WriteTree(t, tree, files)
	fleettest.StartWorker(t, b)
	fleettest.StartWorker(t, a)
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 2 || j.Failed != 0 || j.ListError != "" {
		c.LogObjects(t, sum.Job)
		t.Fatalf("job listed on host-a: %+v", j)
	}
	s3c := f.S3.Client(t)
	for rel, data := range files {
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("upl"), Key: aws.String("t/" + rel)})
		if err != nil {
			t.Fatalf("get t/%s: %v", rel, err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("t/%s: %d bytes (%v), want the file's %d", rel, len(got), err, len(data))
		}
	}

	missing := filepath.Join(root, "missing")
	req = fleettest.Request(missing+"/", "s3://upl/m/")
	req.On, req.Job = "host-a", "nightly"
	if sum, err = c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); !strings.Contains(j.ListError, missing) {
		t.Errorf("a tree missing on host-a: job %+v, want a list error naming it", j)
	}
	// The same job again once the tree is there: listed anew, not taken
	// for the earlier list task.
	if err := os.MkdirAll(missing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(missing, "late.txt"), []byte("late\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if sum, err = c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Succeeded != 1 || j.ListError != "" {
		t.Errorf("the job again with its tree there: %+v", j)
	}

	// The allow_source root itself can be listed.
	req = fleettest.Request(root+"/", "s3://upl/root/")
	req.On = "host-a"
	if sum, err = c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Failed != 0 || j.Succeeded != 3 || j.ListError != "" {
		t.Errorf("the allow_source root: %+v", j)
	}

	// Cancelled before its host's worker runs: the listing ends, and a
	// worker of that host started afterwards uploads nothing.
	req = fleettest.Request(tree+"/", "s3://upl/c/")
	req.On = "host-c"
	if sum, err = c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cancel(ctx, sum.Job); err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, 10*time.Second); !strings.Contains(j.ListError, "cancelled") || j.Objects != 0 {
		t.Errorf("cancelled before listing: %+v", j)
	}
	j, err := c.Ledger.GetJob(ctx, sum.Job)
	if err != nil || j.ListTask == "" {
		t.Fatalf("the job names no list task: %+v, %v", j, err)
	}
	if _, err := c.Enqueuer.Control.GetTaskInfo(j.ListQueue, j.ListTask); !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Errorf("after the cancel, the list task is still queued (%v)", err)
	}

	req = fleettest.Request("tree/", "s3://upl/r/")
	req.On = "host-a"
	if _, err := c.Submit(ctx, req); !errors.Is(err, enqueuer.ErrUsage) {
		t.Errorf("a relative path on another host: %v, want a usage error", err)
	}
}
