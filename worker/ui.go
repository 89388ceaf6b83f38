package worker

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/enqueuer"
	"github.com/s3fleet/s3fleet/internal/connect"
	"github.com/s3fleet/s3fleet/internal/jobsui"
	"github.com/s3fleet/s3fleet/internal/metrics"
	"github.com/s3fleet/s3fleet/internal/wake"
	"github.com/s3fleet/s3fleet/ledger"
	"github.com/s3fleet/s3fleet/tasks"
)

// UIPath is where the asynq web UI is served.
const UIPath = "/ui"

// uiHandler serves the jobs view at /jobs/ (and / sends there), the asynq
// web UI at /ui/, Prometheus metrics at /metrics, a health check at
// /healthz and Go's profiles at /debug/pprof/.
func uiHandler(opt asynq.RedisConnOpt, rdb redis.UniversalClient, reg *prometheus.Registry, readOnly bool, jobs http.Handler) (http.Handler, func()) {
	mon := asynqmon.New(asynqmon.Options{
		RootPath:        UIPath,
		RedisConnOpt:    opt,
		ReadOnly:        readOnly,
		ResultFormatter: asynqmon.ResultFormatterFunc(formatResult),
	})
	mux := http.NewServeMux()
	mux.Handle(UIPath+"/", mon)
	mux.Handle(jobsui.Path+"/", jobs)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := rdb.Ping(ctx).Err(); err != nil {
			http.Error(w, "redis unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, jobsui.Path+"/", http.StatusFound)
	})
	return mux, func() { mon.Close() }
}

// DefaultUIAddr is where ServeUI listens when the ui setting is empty.
const DefaultUIAddr = "127.0.0.1:8080"

// ServeUI serves what a worker's ui listener does (the web UI, /metrics
// with the queues and the fleet's backlog, /healthz) without running any
// task, on cfg.UI (DefaultUIAddr when empty), until ctx ends: a monitor
// that stays up however many workers run, or none (enqueue ui).
func ServeUI(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	opt, rdb, err := connect.Redis(ctx, cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	led := ledger.New(rdb, cfg.Retention, ledger.Shards(cfg.RedisShards))
	if err := led.CheckShards(ctx); err != nil { // a monitor records nothing
		return fmt.Errorf("config: %w", err)
	}
	enq, err := monitorControl(ctx, cfg, rdb, led)
	if err != nil {
		// The jobs view's buttons need the enqueuer's S3 client and task
		// keys; without them the monitor still shows everything.
		log.Warn("the jobs view is read-only: cannot cancel or retry", "err", err)
	}
	closeUI, err := startUI(ctx, cmp.Or(cfg.UI, DefaultUIAddr), cfg.UIReadOnly, opt, rdb, newRegistry(rdb, cfg.RedisShards), led, enq, log)
	if err != nil {
		return err
	}
	defer closeUI()
	<-ctx.Done()
	return nil
}

// monitorControl is the enqueuer a monitor's buttons use.
func monitorControl(ctx context.Context, cfg config.Config, rdb redis.UniversalClient, led *ledger.Ledger) (*enqueuer.Enqueuer, error) {
	eps := connect.Endpoints(cfg, rdb, nil)
	s3c, err := eps.Client(ctx, "", "")
	if err != nil {
		return nil, err
	}
	return enqueuer.New(cfg, s3c, eps, led, wake.NewClient(rdb), asynq.NewInspectorFromRedisClient(rdb), nil)
}

// startUI serves uiHandler on addr until ctx ends; the function returned
// releases the UI's resources.
func startUI(ctx context.Context, addr string, readOnly bool, opt asynq.RedisConnOpt, rdb redis.UniversalClient, reg *prometheus.Registry,
	led *ledger.Ledger, enq *enqueuer.Enqueuer, log *slog.Logger) (func(), error) {
	opts := jobsui.Options{ReadOnly: readOnly, AsynqPath: UIPath, Log: log}
	jobs := jobsui.New(led, nil, opts) // without an enqueuer: read-only (not a typed nil)
	if enq != nil {
		jobs = jobsui.New(led, enq, opts)
	}
	h, closeUI := uiHandler(opt, rdb, reg, readOnly, jobs)
	addr, err := serveHTTP(ctx, "ui", addr, h, log)
	if err != nil {
		closeUI()
		return nil, err
	}
	log.Info("web UI", "url", "http://"+addr+jobsui.Path+"/", "queues", "http://"+addr+UIPath+"/", "metrics", "http://"+addr+"/metrics", "readonly", readOnly)
	return closeUI, nil
}

// formatResult pretty-prints an assembler's record for the UI.
func formatResult(taskType string, result []byte) string {
	if taskType != tasks.TypeAssemble {
		return string(result)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, result, "", "  "); err != nil {
		return string(result)
	}
	return out.String()
}

// newRegistry holds the worker's metrics: the fleet's own, asynq's queue
// collector, the fleet's backlog (its shared queues: a host queue's tasks
// run only on that host's workers, so more workers would not take them),
// and the Go and process collectors.
func newRegistry(rdb redis.UniversalClient, shards int) *prometheus.Registry {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		asynqmetrics.NewQueueMetricsCollector(insp),
		metrics.NewBacklog(insp, tasks.SharedQueues(shards)),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// serveHTTP serves h on addr (loopback when the host is left out) until
// ctx ends; name (the setting's) labels its errors.
func serveHTTP(ctx context.Context, name, addr string, h http.Handler, log *slog.Logger) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s address %q: want HOST:PORT: %w", name, addr, err)
	}
	if host == "" {
		host = "127.0.0.1" // loopback unless told otherwise
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		h = loopbackHostOnly(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+" server", "err", err)
		}
	}()
	return l.Addr().String(), nil
}

// loopbackHostOnly refuses, on a listener bound to loopback, a request
// whose Host is not a loopback name: a page of another site whose name
// was rebound to 127.0.0.1 (DNS rebinding) reaches the port, but names its
// own host, and would otherwise read the jobs and press their buttons as
// if it were the UI's own page.
func loopbackHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		if ip := net.ParseIP(strings.Trim(host, "[]")); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, fmt.Sprintf("this listener serves loopback only: Host %q is not a loopback name", r.Host), http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}
