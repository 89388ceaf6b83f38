package s3fleet_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet"
)

// TestJobByID: a job found by its ID reports its record (status, checks,
// listing), its manifest lists every object with its source and checksum,
// and a job submitted From that manifest fetches the same objects again,
// to another directory.
func TestJobByID(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	id := fmt.Sprintf("api-%d", time.Now().UnixNano())
	dest := t.TempDir() + "/"
	j, err := c.Submit(ctx, s3fleet.Job{ID: id, Sources: []string{"s3://bkt/logs/"}, Dest: dest, Include: []string{"1*.log"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := c.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var checked int64
	for _, n := range st.Checks {
		checked += n
	}
	if st.ID != id || st.State() != "success" || !st.Listed || st.Objects != 10 || st.Succeeded != 10 || checked != 10 ||
		st.Source != "s3://bkt/logs/" || st.Created.IsZero() {
		t.Fatalf("status %+v", st)
	}
	jobs, err := c.Jobs(ctx, 100)
	if err != nil || !slices.ContainsFunc(jobs, func(s s3fleet.JobStatus) bool { return s.ID == id }) {
		t.Fatalf("Jobs: %d jobs, %v; want %s among them", len(jobs), err, id)
	}

	var manifest bytes.Buffer
	if err := h.WriteManifest(ctx, &manifest); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for sc := bufio.NewScanner(bytes.NewReader(manifest.Bytes())); sc.Scan(); lines++ {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || !strings.HasPrefix(fmt.Sprint(rec["source"]), "s3://bkt/logs/1") ||
			rec["state"] != "success" {
			t.Fatalf("manifest line %q: %v", sc.Text(), err)
		}
	}
	if lines != 10 {
		t.Fatalf("manifest of %d lines, want 10:\n%s", lines, manifest.String())
	}
	again := t.TempDir() + "/"
	j2, err := c.Submit(ctx, s3fleet.Job{From: &manifest, Dest: again})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := j2.Wait(ctx); err != nil || p.Succeeded != 10 {
		t.Fatalf("a job from the manifest: %+v %v", p, err)
	}
	for i := 10; i < 20; i++ {
		key := fmt.Sprintf("logs/%02d.log", i)
		if !bytes.Equal(mustRead(t, filepath.Join(again, key)), get(t, key)) {
			t.Fatalf("%s from the manifest differs from the object", key)
		}
	}

	if _, err := c.Job(ctx, "no-such-job"); !errors.Is(err, s3fleet.ErrUnknownJob) {
		t.Fatalf("Job of an unknown ID: %v", err)
	}
}

// TestPlan: a dry run names every object and what Submit would do with
// it, and neither records nor writes anything.
func TestPlan(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	dest := t.TempDir() + "/"
	var mu sync.Mutex
	actions := map[string]int{}
	sum, err := c.Plan(ctx, s3fleet.Job{Sources: []string{"s3://bkt/logs/"}, Dest: dest}, func(p s3fleet.PlannedObject) {
		mu.Lock()
		defer mu.Unlock()
		actions[p.Action]++
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Objects != 21 || !sum.DryRun || actions["download"] != 21 {
		t.Fatalf("plan: %+v, actions %v; want 21 downloads", sum, actions)
	}
	time.Sleep(300 * time.Millisecond) // had anything been enqueued, the worker would be writing now
	if entries, _ := os.ReadDir(dest); len(entries) != 0 {
		t.Fatalf("a dry run wrote %d entries", len(entries))
	}
	if sum.Job != "" {
		if _, err := c.Job(ctx, sum.Job); !errors.Is(err, s3fleet.ErrUnknownJob) {
			t.Fatalf("a dry run recorded job %s: %v", sum.Job, err)
		}
	}
}

// TestSubmitInvalid: a request at fault is ErrInvalid and enqueues
// nothing.
func TestSubmitInvalid(t *testing.T) {
	c := connect(t)
	for name, j := range map[string]s3fleet.Job{
		"no source":   {Dest: t.TempDir() + "/"},
		"bad SSE-C":   {Sources: []string{"s3://bkt/logs/"}, Dest: t.TempDir() + "/", SSECKey: []byte("short")},
		"bad pattern": {Sources: []string{"s3://bkt/logs/"}, Dest: t.TempDir() + "/", Include: []string{"[a-"}},
	} {
		if _, err := c.Submit(context.Background(), j); !errors.Is(err, s3fleet.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// An option of Submit counts as the Job's field would (a review found
	// them dropped: a Priority("high") job ran on the default queue).
	j := s3fleet.Job{Sources: []string{"s3://bkt/logs/"}, Dest: t.TempDir() + "/"}
	for name, opt := range map[string]s3fleet.Option{"priority": s3fleet.Priority("bogus"), "verify": s3fleet.Verify("bogus")} {
		if _, err := c.Plan(context.Background(), j, nil, opt); err == nil || !strings.Contains(err.Error(), "bogus") {
			t.Errorf("Plan with a bad %s option: %v", name, err)
		}
	}
	if _, err := c.Jobs(context.Background(), 0); !errors.Is(err, s3fleet.ErrInvalid) {
		t.Errorf("Jobs(0): %v, want ErrInvalid", err)
	}
}

// TestSecretKeyRedacted: a Job's SSE-C key never prints, whichever way the
// Job is printed or logged.
func TestSecretKeyRedacted(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	j := s3fleet.Job{Sources: []string{"s3://bkt/x"}, SSECKey: s3fleet.SecretKey(key)}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("job", "job", j, "key", j.SSECKey)
	js, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s %x %q", j, j, j, j.SSECKey, j.SSECKey, j.SSECKey), logged.String(), string(js)} {
		if strings.Contains(out, key) || strings.Contains(out, fmt.Sprintf("%x", key)) || !strings.Contains(out, "[redacted]") {
			t.Errorf("printed: %s", out)
		}
	}
}

// TestSetupRetried: a failure to set up the client's S3 side (here, a task
// key file not there yet) is not kept: once the file is there, the next
// call works.
func TestSetupRetried(t *testing.T) {
	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	opts.TaskKeyFile = filepath.Join(t.TempDir(), "keys")
	c, err := s3fleet.Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	j := s3fleet.Job{Sources: []string{"s3://bkt/logs/"}, Dest: t.TempDir() + "/"}
	if _, err := c.Plan(context.Background(), j, nil); err == nil {
		t.Fatal("Plan with no task key file worked")
	}
	if err := os.WriteFile(opts.TaskKeyFile, []byte("a-task-key-of-at-least-32-bytes-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Plan(context.Background(), j, nil); err != nil {
		t.Fatalf("Plan once the key file is there: %v", err)
	}
}

// TestRetryAndRemove: an object refused for a file in its way fails the
// job (ErrJobFailed, its cause among Objects); once the file is gone,
// Retry lands it. Remove deletes an object through the fleet.
func TestRetryAndRemove(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	dir := t.TempDir()
	dest := filepath.Join(dir, "00.log")
	if err := os.WriteFile(dest, []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := c.Submit(ctx, s3fleet.Job{Sources: []string{"s3://bkt/logs/"}, Dest: dir + "/", Include: []string{"0[01].log"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := j.Wait(ctx); !errors.Is(err, s3fleet.ErrJobFailed) || p.Failed != 1 || p.Succeeded != 1 {
		t.Fatalf("Wait with a file in the way: %+v %v", p, err)
	}
	failed := 0
	for rec, err := range j.Objects(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.State == s3fleet.Failed {
			failed++
			if rec.Dest != dest || !strings.Contains(rec.Cause, "exists") {
				t.Fatalf("the refused object: %+v", rec)
			}
		}
	}
	if failed != 1 {
		t.Fatalf("Objects listed %d failed, want 1", failed)
	}
	if err := os.Remove(dest); err != nil {
		t.Fatal(err)
	}
	if sum, err := j.Retry(ctx); err != nil || sum.Resumed != 1 {
		t.Fatalf("Retry: %+v %v", sum, err)
	}
	if p, err := j.Wait(ctx); err != nil || p.Succeeded != 2 || p.Failed != 0 {
		t.Fatalf("Wait after Retry: %+v %v", p, err)
	}
	if !bytes.Equal(mustRead(t, dest), get(t, "logs/00.log")) {
		t.Fatal("the retried file differs from the object")
	}

	fleet.s3.Put(t, "out", "gone/old.txt", strings.NewReader("old"), false)
	rm, err := c.Submit(ctx, s3fleet.Job{Sources: []string{"s3://out/gone/old.txt"}, Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(fleet.s3.Root, "out", "gone/old.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the removed object is still there: %v", err)
	}
}

// TestWaitNotices: Wait tells OnNotice when the job's tasks wait on a
// queue no live worker serves (a job run On a host that has none), and
// returns ctx's error when it ends first; Cancel then stops the job.
func TestWaitNotices(t *testing.T) {
	c := connect(t)
	host := fmt.Sprintf("nohost-%d", time.Now().UnixNano())
	j, err := c.Submit(context.Background(), s3fleet.Job{Sources: []string{"s3://bkt/logs/big.log"}, Dest: t.TempDir() + "/", On: host})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var notes []string
	_, err = j.Wait(ctx, s3fleet.OnNotice(func(s string) { notes = append(notes, s) }))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a host with no worker: %v", err)
	}
	if !slices.ContainsFunc(notes, func(s string) bool {
		return strings.Contains(s, "no worker is serving queue host:"+host) && strings.Contains(s, j.ID())
	}) {
		t.Fatalf("notices %q: want one naming the unserved host queue and the job", notes)
	}
	if n, err := j.Cancel(context.Background()); err != nil || n != 1 {
		t.Fatalf("Cancel: %d %v", n, err)
	}
}
