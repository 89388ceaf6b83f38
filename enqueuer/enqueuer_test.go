package enqueuer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"

	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// hostileLister is a one-method fake of S3 whose listing holds keys no real
// test server would store: the enqueuer must refuse them, not trust them.
type hostileLister struct {
	keys []string
}

func (h hostileLister) ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	out := &s3.ListObjectsV2Output{}
	for _, k := range h.keys {
		out.Contents = append(out.Contents, types.Object{Key: aws.String("p/" + k), Size: aws.Int64(10), ETag: aws.String(`"e"`)})
	}
	return out, nil
}

func (hostileLister) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return nil, errors.New("no HEAD expected for a prefix")
}

func (hostileLister) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return nil, errors.New("no HEAD expected for a prefix")
}

// TestHostileKeysAreRefused: keys that would escape the destination are
// recorded failed with the cause and get no task; the others are enqueued.
func TestHostileKeysAreRefused(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client(t)
	led := ledger.New(rdb, time.Hour)
	e := &enqueuer.Enqueuer{
		S3:     hostileLister{keys: []string{"ok.txt", "../escape", "a/../../b", "/abs", "x\x00y", strings.Repeat("n", 256), "dir/", "fine/ü.txt"}},
		Ledger: led, Queue: asynq.NewClientFromRedisClient(rdb), ChunkSize: 8 << 20, Threshold: 8 << 20, Parallel: 4,
	}
	dest := t.TempDir() + "/"
	sum, err := e.Submit(context.Background(), enqueuer.Request{Sources: []string{"s3://bkt/p/"}, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	// "dir/" of size 10 is not a folder marker (those are empty) but names a directory.
	if sum.Objects != 8 || sum.New != 2 || sum.Refused != 6 || sum.Chunks != 2 {
		t.Fatalf("summary %+v, want 2 new and 6 refused", sum)
	}
	failed := 0
	err = led.JobObjects(context.Background(), sum.Job, func(o ledger.JobObject) error {
		if o.State == ledger.Failed {
			failed++
			if !strings.Contains(o.Error, "unsafe key") {
				t.Errorf("%q: cause %q", o.Key, o.Error)
			}
		}
		return nil
	})
	if err != nil || failed != 6 {
		t.Fatalf("%d failed objects (%v), want 6", failed, err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	pending, err := insp.ListPendingTasks(tasks.QueueChunks)
	if err != nil || len(pending) != 2 {
		t.Fatalf("%d chunk tasks pending (%v), want 2", len(pending), err)
	}
	for _, p := range pending {
		if !strings.Contains(string(p.Payload), dest) {
			t.Errorf("task outside the destination: %s", p.Payload)
		}
	}
}

func size(n int64) *int64 { return &n }

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	e := &enqueuer.Enqueuer{}
	for _, req := range []enqueuer.Request{
		{Sources: []string{"bkt/key"}, Dest: "/x"},
		{Sources: []string{"s3://bkt/key"}, Dest: ""},
		{Sources: []string{"s3://bkt/p/"}, Dest: "/x/", ExpectedSize: size(10)},
		{Sources: []string{"s3://bkt/key"}, Dest: "/x", ExpectedSize: size(-1)},
		{Sources: []string{"s3://bkt/key"}, Dest: "/x", ExpectedSize: size(10), Verify: "required"},
		{Sources: []string{"s3://bkt/key"}, Dest: "/x", Verify: "sometimes"},
		{Sources: []string{"s3://bkt/p/"}, Dest: "/x/", VersionID: "v1"},
		{Sources: []string{"s3://bkt/key"}, Dest: "/x", Job: "has space"},
		{Sources: []string{"s3://bkt/key"}, Dest: "/x", Write: ledger.Write{StorageClass: "STANDARD_IA"}},
		{Sources: []string{"s3://bkt/key"}, Dest: "s3://out/key", Write: ledger.Write{StorageClass: "FROZEN"}},
		{Sources: []string{"s3://bkt/key"}, Dest: "s3://out/key", Write: ledger.Write{SSEKMSKeyID: "k"}},
	} {
		if _, err := e.Submit(context.Background(), req); !errors.Is(err, enqueuer.ErrUsage) {
			t.Errorf("%+v: error %v, want ErrUsage", req, err)
		}
	}
}
