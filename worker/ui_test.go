package worker_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/tasks"
)

// chromium finds the browser; without one the test skips, except in CI
// (CI=true), where .ci/run installs it and a missing browser is a failure.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium); CI installs it")
	return ""
}

// browse renders url in headless Chromium: its DOM once the page's scripts
// have run, and a screenshot when shot is not empty.
func browse(t *testing.T, bin, url, shot string) string {
	t.Helper()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
		"--user-data-dir=" + t.TempDir(), "--window-size=1400,1000", "--virtual-time-budget=15000"}
	if shot != "" {
		args = append(args, "--screenshot="+shot)
	} else {
		args = append(args, "--dump-dom")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr.String())
	}
	return out.String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWebUI starts a worker with --ui, runs a job, and checks as a person
// would: the rendered asynq web UI shows the fleet's queues and the
// finished assembler task's result with its checksum; /metrics counts the
// bytes; /healthz answers.
func TestWebUI(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	data := f.S3.PutRandom(t, "bkt", "report.bin", 3*mib+5, true)
	cfg := f.Config()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.UI = addr
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/report.bin", filepath.Join(t.TempDir(), "report.bin")))
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(t, sum.Job, time.Minute)
	o := c.Objects(t, sum.Job)["report.bin"]
	if o.Check != "crc32c" || o.Computed == "" {
		t.Fatalf("object %+v", o)
	}
	base := "http://" + addr

	if code, body := httpGet(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := httpGet(t, base+"/debug/pprof/heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile:") {
		t.Fatalf("/debug/pprof/heap: %d %.200q", code, body)
	}
	// The ledger records the object before its assembler counts it: wait
	// for the count.
	finalized := regexp.MustCompile(`(?m)^s3fleet_objects_finalized_total\{[^}]*state="success"[^}]*\} 1$`)
	var metrics string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, metrics = httpGet(t, base+"/metrics")
		if finalized.MatchString(metrics) || time.Now().After(deadline) {
			break
		}
	}
	if !finalized.MatchString(metrics) {
		t.Errorf("/metrics does not count the object as finalized with success:\n%s", metrics)
	}
	m := regexp.MustCompile(`(?m)^s3fleet_bytes_downloaded_total\{[^}]*\} (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		t.Fatalf("/metrics has no s3fleet_bytes_downloaded_total:\n%s", metrics)
	}
	if v, _ := strconv.ParseFloat(m[1], 64); int(v) != len(data) {
		t.Errorf("bytes downloaded %s, want %d", m[1], len(data))
	}
	for _, want := range []string{`asynq_queue_size{queue="assemble"}`, `s3fleet_chunk_duration_seconds_count`, "\ns3fleet_backlog 0\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	dom := browse(t, browser, base+"/ui/", "")
	for _, q := range []string{o.Queue, tasks.QueueAssemble} { // chunks, or its shard's (chunks.N)
		if !strings.Contains(dom, ">"+q+"<") {
			t.Errorf("the rendered dashboard does not show the queue %q", q)
		}
	}
	taskURL := base + "/ui/queues/" + tasks.QueueAssemble + "/tasks/" + tasks.AssembleTaskID(o.ID, o.Gen, o.Created)
	dom = regexp.MustCompile(`<[^>]*>`).ReplaceAllString(browse(t, browser, taskURL, ""), "") // the text a person reads
	for _, want := range []string{o.Computed, `"check": "crc32c"`, "s3://bkt/report.bin"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered task page does not show %q", want)
		}
	}
	shot := filepath.Join(t.TempDir(), "ui-task.png")
	if dir := os.Getenv("S3FLEET_SCREENSHOT_DIR"); dir != "" {
		shot = filepath.Join(dir, "ui-task.png")
	}
	browse(t, browser, taskURL, shot)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot of %s: %s", taskURL, shot)
}
