package worker_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestHealthListener runs a worker with health_addr against a real Redis:
// /readyz is 200 once it takes tasks, 503 while Redis does not answer and
// 200 again after, while /healthz stays 200 throughout; the listener serves
// none of the UI listener's paths.
func TestHealthListener(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	cfg := config.Defaults()
	cfg.Redis = r.URL
	cfg.Endpoint = "http://127.0.0.1:1" // never asked: no task runs
	cfg.AllowDest = []string{t.TempDir()}
	cfg.ShutdownTimeout = time.Second
	cfg.LogLevel = "error"
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.HealthAddr = addr
	fleettest.StartWorker(t, cfg)
	base := "http://" + addr
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	waitFor := func(path string, want int, limit time.Duration) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			code, body := get("GET", path)
			if code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %q after %s, want %d", path, code, body, limit, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	waitFor("/readyz", 200, 15*time.Second)
	if code, body := get("GET", "/healthz"); code != 200 || body != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	for _, path := range []string{"/", "/ui/", "/ui/api/queues", "/metrics", "/debug/pprof/"} {
		if code, _ := get("GET", path); code != http.StatusNotFound {
			t.Errorf("GET %s on the health listener: %d, want 404", path, code)
		}
	}
	if code, _ := get("POST", "/ui/api/queues/chunks:pause"); code != http.StatusNotFound {
		t.Errorf("a task action on the health listener: %d, want 404", code)
	}

	paused := make(chan struct{})
	go func() { defer close(paused); r.Pause(t, 4*time.Second) }() // the port stays open, nothing answers
	waitFor("/readyz", 503, 4*time.Second)
	if code, body := get("GET", "/healthz"); code != 200 {
		t.Errorf("/healthz while Redis does not answer: %d %q, want 200 (a restart would not help)", code, body)
	}
	<-paused
	waitFor("/readyz", 200, 10*time.Second)
}
