package worker

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// healthHandler serves a worker's probes and nothing else (no UI, no
// metrics, no task actions), so the listener can be open to the kubelet:
//   - /healthz: the process answers (liveness). Redis is not asked: a Redis
//     outage is ridden out, and restarting every worker would not end it.
//   - /readyz: the worker takes tasks (its asynq server has started and is
//     not stopping) and Redis answers a PING (readiness).
func healthHandler(running func() bool, ping func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !running() {
			http.Error(w, "not ready: the worker is not taking tasks (starting or stopping)", http.StatusServiceUnavailable)
			return
		}
		if err := within(r.Context(), 2*time.Second, ping); err != nil {
			http.Error(w, "not ready: redis unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// within runs f with a deadline of d and returns when that passes even if f
// has not: go-redis leaves a stalled read to its own read timeout, longer
// than a probe waits.
func within(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	done := make(chan error, 1) // f may finish after we stopped waiting
	go func() { done <- f(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
