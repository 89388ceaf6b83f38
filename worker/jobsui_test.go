package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/worker"
)

// TestJobsPage drives the jobs view in headless Chromium as a person
// would: the list shows a finished job and a running one, live; the
// finished job's page lists its objects with their checks, task links and
// a throughput chart; the Cancel button on the running job's page stops
// it (the job ends cancelled, its file never lands). A read-only UI shows
// no buttons and refuses a POST on the server, and a cross-site form is
// refused by the writable one. Screenshots go to S3FLEET_SCREENSHOT_DIR
// when set (docs/ui-jobs.png, docs/ui-job.png).
func TestJobsPage(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	f := fleettest.New(t)
	proxy := testenv.StartFaultProxy(t, f.S3.Endpoint)
	proxy.SetRule(func(r *http.Request) testenv.Fault {
		if testenv.IsObjectGET(r) && strings.Contains(r.URL.Path, "/slow/") {
			return testenv.Fault{Rate: 256 << 10} // 4 s a 1 MiB chunk
		}
		return testenv.Fault{}
	})
	f.S3.CreateBucket(t, "bkt")
	for i := range 5 {
		f.S3.PutRandom(t, "bkt", fmt.Sprintf("done/%d.bin", i), int64(2*mib+i), true)
	}
	// 64 chunks, 4 at a time, 4 s each: the job runs about a minute,
	// longer than the browser takes to reach Cancel on a loaded machine.
	f.S3.PutRandom(t, "bkt", "slow/big.bin", 64*mib, true)
	cfg := f.Config()
	cfg.Endpoint = proxy.URL
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.UI = addr
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	ctx := context.Background()
	req := fleettest.Request("s3://bkt/done/", t.TempDir()+"/")
	req.Job = "finished"
	if _, err := c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	c.Wait(t, "finished", time.Minute)
	slowDest := filepath.Join(t.TempDir(), "big.bin")
	req = fleettest.Request("s3://bkt/slow/big.bin", slowDest)
	req.Job = "running"
	if _, err := c.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr

	bctx := headless(t, browser)
	// must runs one browser action and fails the test on an error.
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			body, _ := chromedp.Run(context.WithoutCancel(bctx), chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("%s: %v; the page:\n%.2000s", what, err, body)
		}
	}
	// Selectors are CSS ones (chromedp.CSS): a plain string is also
	// searched as text, and finds the page's style sheet first.
	shot := func(name string) {
		t.Helper()
		dir := os.Getenv("S3FLEET_SCREENSHOT_DIR")
		if dir == "" {
			dir = t.TempDir()
		}
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		must("screenshot", err)
		must("write screenshot", os.WriteFile(filepath.Join(dir, name), png, 0o644))
		t.Logf("screenshot: %s", filepath.Join(dir, name))
	}

	// The list: both jobs, the running one's bar moving (bytes streaming
	// count), refreshed without a reload.
	must("the jobs list", chromedp.Do(bctx,
		chromedp.Navigate(base+"/"), // the root sends to the jobs view
		chromedp.WaitVisible(chromedp.CSS(`a[href="/jobs/job/running"]`)),
		chromedp.Sleep(2500*time.Millisecond), // one refresh
	))
	_, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](`!document.querySelector("#rows").innerText.includes(" 0%")`,
		chromedp.WithPollingTimeout(20*time.Second)))
	must("the running job's bar moving", err)
	rows, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#rows")))
	must("the jobs list's rows", err)
	shot("ui-jobs.png")
	for _, want := range []string{"finished", "done", "5/5", "running", "s3://bkt/slow/big.bin"} {
		if !strings.Contains(rows, want) {
			t.Errorf("the jobs list lacks %q:\n%s", want, rows)
		}
	}

	// The finished job's page: its objects with their checks and task
	// links, and the throughput chart.
	must("the finished job's page", chromedp.Do(bctx, chromedp.Navigate(base+"/jobs/job/finished"), chromedp.WaitVisible(chromedp.CSS(`svg.chart`))))
	objects, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("table")))
	must("its objects", err)
	chart, err := chromedp.Run(bctx, chromedp.OuterHTML(chromedp.CSS("svg.chart")))
	must("its chart", err)
	links, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("td a")].map(a => a.getAttribute("href"))`))
	must("its links", err)
	shot("ui-job.png")
	if strings.Count(objects, "success") != 5 || !strings.Contains(objects, "crc32c") || !strings.Contains(chart, "<rect") {
		t.Errorf("the finished job's page: objects\n%s\nchart %.300s", objects, chart)
	}
	if len(links) != 5 || !strings.HasPrefix(links[0], "/ui/queues/") {
		t.Errorf("task links %q, want 5 into asynqmon", links)
	} else if code, _ := httpGet(t, base+"/ui/api"+strings.TrimPrefix(links[0], "/ui")); code != 200 {
		t.Errorf("the task link %s: asynqmon answers %d for its task", links[0], code)
	}

	// Cancel from the running job's page.
	if j, err := c.Ledger.GetJob(ctx, "running"); err != nil || j.Done() {
		t.Fatalf("the slow job ended before the test reached its Cancel button: %+v (%v)", j, err)
	}
	cctx, cancelStep := context.WithTimeout(bctx, time.Minute) // the page is printed if it hangs
	defer cancelStep()
	must("cancel from the page", chromedp.Do(cctx,
		chromedp.Navigate(base+"/jobs/job/running"),
		chromedp.WaitVisible(chromedp.CSS(`#cancel`)),
		chromedp.Click(chromedp.CSS(`#cancel`)),
	))
	var msg string // once the form's POST has been answered and the page reloaded
	for deadline := time.Now().Add(20 * time.Second); msg == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		msg, _ = chromedp.Run(bctx, chromedp.Evaluate[string](`(document.querySelector(".msg") || {}).innerText || ""`))
	}
	if msg != "cancelled 1 objects" {
		t.Errorf("after Cancel the page says %q", msg)
	}
	retry, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#retry").length`))
	if err != nil || retry != 1 {
		t.Errorf("the cancelled job's page shows %d Retry buttons (%v), want 1", retry, err)
	}
	if j := c.Wait(t, "running", 30*time.Second); j.Cancelled != 1 || j.Succeeded != 0 {
		t.Fatalf("the job after Cancel on its page: %+v", j)
	}
	time.Sleep(6 * time.Second) // longer than a chunk: none lands late
	if _, err := os.Stat(slowDest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cancelled job's file: %v, want none", err)
	}

	// A cross-site form is refused, whatever the UI.
	cross, _ := http.NewRequest("POST", base+"/jobs/job/finished/retry", nil)
	cross.Header.Set("Origin", "http://evil.example")
	cross.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := http.DefaultClient.Do(cross); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site POST: %d, want 403", resp.StatusCode)
	}

	// A read-only UI: no buttons, and a POST (same origin) is refused.
	roAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	roCfg := cfg
	roCfg.UI, roCfg.UIReadOnly = roAddr, true
	rctx, stopRO := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker.ServeUI(rctx, roCfg, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() { stopRO(); <-done })
	roBase := "http://" + roAddr
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(roBase + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read-only UI did not start")
		}
	}
	tab := headless(t, browser) // a browser of its own
	must("the read-only page", chromedp.Do(tab, chromedp.Navigate(roBase+"/jobs/job/running"), chromedp.WaitVisible(chromedp.CSS("h1"))))
	buttons, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll("button").length`))
	must("its buttons", err)
	if buttons != 0 {
		t.Errorf("the read-only page of a cancelled job shows %d buttons, want no Retry", buttons)
	}
	r, _ := http.NewRequest("POST", roBase+"/jobs/job/running/retry", nil)
	r.Header.Set("Origin", roBase)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a POST to the read-only UI: %d, want 403", resp.StatusCode)
	}
	if j := c.Wait(t, "running", time.Second); j.Cancelled != 1 {
		t.Errorf("the job after a refused retry: %+v, want it still cancelled", j)
	}
}

// headless starts a headless Chromium for the test (stopped when it ends,
// or after 3 minutes) and returns its chromedp context.
func headless(t *testing.T, bin string) context.Context {
	t.Helper()
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 3*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.WindowSize(1400, 900),
		chromedp.UserDataDir(t.TempDir()))...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancelTimeout() })
	return bctx
}
