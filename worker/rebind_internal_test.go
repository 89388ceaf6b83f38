package worker

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
)

// TestLoopbackHostOnly: a listener on loopback answers requests naming a
// loopback host, and refuses (421) one naming another host, as a page
// whose name was rebound to 127.0.0.1 does; one on another address does
// not care.
func TestLoopbackHostOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	addr, err := serveHTTP(ctx, "ui", "127.0.0.1:0", ok, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]int{addr: 204, "localhost": 204, "127.0.0.1": 204, "[::1]:8080": 204,
		"evil.example": http.StatusMisdirectedRequest, "evil.example:8080": http.StatusMisdirectedRequest, "10.0.0.1": http.StatusMisdirectedRequest} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/jobs/job/j/cancel", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
	all, err := serveHTTP(ctx, "ui", "0.0.0.0:0", ok, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+all+"/", nil)
	req.Host = "s3fleet.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("a listener on all addresses, Host s3fleet.example.com: %d, want 204", resp.StatusCode)
	}
}
