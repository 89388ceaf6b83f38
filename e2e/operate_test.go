package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOperateCLI drives the job commands as a script would: --json and
// --quiet, a manifest written by --wait and read back by --from, list,
// wait, cancel and retry of a finished job.
func TestOperateCLI(t *testing.T) {
	tier(t)
	f := newFleet(t)
	f.s3.CreateBucket(t, "bkt")
	want := map[string][32]byte{}
	for i := range 12 {
		key := fmt.Sprintf("data/dir%d/obj-%02d.bin", i%3, i)
		want[key] = sha(f.s3.PutRandom(t, "bkt", key, int64(1000*i+1), true))
	}
	f.worker(t, "worker", "--concurrency", "4")
	out := t.TempDir()
	manifest := filepath.Join(t.TempDir(), "done.jsonl")

	code, stdout := f.enqueue(t, "s3://bkt/data/", out+"/a/", "--wait", "--json", "--job", "first", "--manifest", manifest)
	var done struct {
		Job    string  `json:"job"`
		State  string  `json:"state"`
		WallMS int64   `json:"wall_ms"`
		MBps   float64 `json:"mb_per_s"`
		Counts struct {
			Success int `json:"success"`
		} `json:"counts"`
	}
	if err := json.Unmarshal([]byte(lastLine(stdout)), &done); code != 0 || err != nil || done.State != "success" || done.Counts.Success != 12 {
		t.Fatalf("--wait --json: exit %d, %v: %s", code, err, stdout)
	}

	mf, err := os.Open(manifest)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	sc := bufio.NewScanner(mf)
	for sc.Scan() {
		var rec struct {
			Source, State, Checksum, Check string
			Size                           int64
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.State != "success" || rec.Check != "crc32c" || rec.Checksum == "" {
			t.Fatalf("manifest line %q: %v", sc.Text(), err)
		}
		lines++
	}
	mf.Close()
	if lines != 12 {
		t.Fatalf("manifest has %d lines, want 12", lines)
	}

	// The manifest as a source list: no HEAD, keys land at their path.
	code, stdout = f.enqueue(t, "--from", manifest, out+"/b/", "--wait", "--quiet", "--job", "second")
	if code != 0 || strings.TrimSpace(stdout) != "" {
		t.Fatalf("--from --quiet: exit %d, output %q", code, stdout)
	}
	for key, sum := range want {
		if got := fileSHA(t, filepath.Join(out, "b", key)); got != sum {
			t.Errorf("%s via --from: SHA-256 differs", key)
		}
	}

	code, stdout = f.enqueue(t, "list", "--json")
	var jobs []struct {
		Job   string `json:"job"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(stdout), &jobs); code != 0 || err != nil || len(jobs) != 2 || jobs[0].Job != "second" {
		t.Fatalf("list --json: exit %d, %v: %s", code, err, stdout)
	}
	if code, stdout = f.enqueue(t, "list"); code != 0 || !strings.Contains(stdout, "first") || !strings.Contains(stdout, "success") {
		t.Fatalf("list: exit %d: %s", code, stdout)
	}
	if code, stdout = f.enqueue(t, "wait", "first", "--quiet"); code != 0 || stdout != "" {
		t.Fatalf("wait --quiet: exit %d: %q", code, stdout)
	}
	if code, stdout = f.enqueue(t, "cancel", "first", "--json"); code != 0 || !strings.Contains(stdout, `"cancelled":0`) {
		t.Fatalf("cancel of a finished job: exit %d: %s", code, stdout)
	}
	if code, stdout = f.enqueue(t, "retry", "first"); code != 0 || !strings.Contains(stdout, "0 objects enqueued again") {
		t.Fatalf("retry of a finished job: exit %d: %s", code, stdout)
	}
	if code, stdout = f.enqueue(t, "s3://bkt/data/", out+"/c/", "--dry-run", "--include", "dir1/**"); code != 0 || !strings.Contains(stdout, "dry run: 4 objects") {
		t.Fatalf("dry run: exit %d: %s", code, stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "c")); !os.IsNotExist(err) {
		t.Fatal("a dry run created the destination")
	}
	for _, cmd := range []string{"wait", "cancel", "retry", "status"} {
		if code, _ := f.enqueue(t, cmd, "no-such-job"); code != 2 {
			t.Errorf("%s of an unknown job: exit %d, want 2", cmd, code)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
