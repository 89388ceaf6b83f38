package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLocal: enqueue --local downloads with no Redis and no worker to
// start; killed mid-job, a re-run with --sync finishes what was missing.
func TestLocal(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.s3.CreateBucket(t, "bkt")
	want := map[string][32]byte{}
	for i := range 40 {
		key := fmt.Sprintf("p/obj-%02d", i)
		want[key] = sha(f.s3.PutRandom(t, "bkt", key, int64(256<<10+i), false))
	}
	env := append([]string{}, f.env...)
	env = append(env, "S3FLEET_REDIS=redis://127.0.0.1:1/0", // never used: --local needs no Redis
		"S3FLEET_BATCH_OBJECTS=4") // small batches, so the kill lands between them
	out := t.TempDir()
	run := func(args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(binDir, "enqueue"), append([]string{"--local", "--concurrency", "4"}, args...)...)
		cmd.Env = env
		return cmd
	}

	// Slow S3 down so the first run can be killed halfway.
	f.proxy.SetTamper(func(r *http.Request, _ *http.Response) {
		if r.Method == http.MethodGet && !r.URL.Query().Has("list-type") {
			time.Sleep(100 * time.Millisecond)
		}
	})
	first := run("s3://bkt/p/", out+"/")
	var log bytes.Buffer
	first.Stdout, first.Stderr = &log, &log
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		entries, _ := os.ReadDir(out)
		done := 0
		for _, e := range entries {
			if !strings.Contains(e.Name(), ".s3fleet-") {
				done++
			}
		}
		if done >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %s", log.String())
		}
	}
	_ = first.Process.Kill()
	_ = first.Wait()
	landed, _ := os.ReadDir(out)
	t.Logf("killed enqueue --local with %d entries in the destination", len(landed))

	f.proxy.SetTamper(nil)
	again := run("--sync", "s3://bkt/p/", out+"/")
	b, err := again.CombinedOutput()
	if err != nil {
		t.Fatalf("re-run with --sync: %v\n%s", err, b)
	}
	// The summary and the progress, nothing of the SDK's own logger.
	if strings.Contains(string(b), "SDK 20") || strings.Contains(log.String(), "SDK 20") {
		t.Errorf("enqueue --local printed the SDK's log lines:\n%s\n%s", log.String(), b)
	}
	m := regexp.MustCompile(`(\d+) already done`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("re-run output: %s", b)
	}
	if n, _ := strconv.Atoi(m[1]); n < 5 || n == len(want) {
		t.Fatalf("re-run should skip what the first run finished and fetch the rest: %s", b)
	}
	for key, sum := range want {
		if got := fileSHA(t, filepath.Join(out, strings.TrimPrefix(key, "p/"))); got != sum {
			t.Errorf("%s: SHA-256 differs", key)
		}
	}
	if parts, _ := filepath.Glob(filepath.Join(out, "*.s3fleet-*")); len(parts) != 0 {
		t.Logf("part files of the killed run left behind: %d", len(parts))
	}
}
