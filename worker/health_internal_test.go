package worker

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
)

// TestHealthHandler: /readyz is 200 only while the worker takes tasks and
// Redis answers; /healthz is 200 whatever Redis does; nothing else is
// served.
func TestHealthHandler(t *testing.T) {
	t.Parallel()
	down := errors.New("dial tcp: connection refused")
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		running  bool
		pingErr  error
		wantCode int
	}{
		{"ready", "GET", "/readyz", true, nil, 200},
		{"starting or stopping", "GET", "/readyz", false, nil, 503},
		{"redis down", "GET", "/readyz", true, down, 503},
		{"alive while redis is down", "GET", "/healthz", true, down, 200},
		{"alive while stopping", "GET", "/healthz", false, nil, 200},
		{"HEAD for probes", "HEAD", "/readyz", true, nil, 200},
		{"no UI", "GET", "/ui/", true, nil, 404},
		{"no jobs view", "GET", "/jobs/", true, nil, 404},
		{"no job actions", "POST", "/jobs/job/j/cancel", true, nil, 404},
		{"no metrics", "GET", "/metrics", true, nil, 404},
		{"no profiles", "GET", "/debug/pprof/", true, nil, 404},
		{"no task actions", "POST", "/ui/api/queues/chunks:pause", true, nil, 404},
		{"no root redirect", "GET", "/", true, nil, 404},
		{"read only", "POST", "/readyz", true, nil, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := healthHandler(func() bool { return tc.running }, func(context.Context) error { return tc.pingErr })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.wantCode {
				t.Errorf("%s %s: %d %q, want %d", tc.method, tc.path, rec.Code, rec.Body.String(), tc.wantCode)
			}
		})
	}
}
