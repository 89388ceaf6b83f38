// Package metrics holds the fleet's Prometheus metrics: what each worker
// downloaded, how its chunks fared and how long they took, and the objects
// it finalized. asynq's queue collector sits beside them on /metrics.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Worker is one worker's metrics.
type Worker struct {
	bytes     prometheus.Counter
	chunks    *prometheus.CounterVec
	latency   prometheus.Histogram
	finalized *prometheus.CounterVec
	verified  *prometheus.CounterVec
}

// NewWorker registers a worker's metrics on reg, labelled with its name.
func NewWorker(reg prometheus.Registerer, worker string) *Worker {
	labels := prometheus.Labels{"worker": worker}
	w := &Worker{
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "s3fleet", Name: "bytes_downloaded_total", ConstLabels: labels,
			Help: "Bytes written to destination files by this worker's chunks.",
		}),
		chunks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "s3fleet", Name: "chunks_total", ConstLabels: labels,
			Help: "Chunk tasks by result: done, retried (failed, will retry), failed (no retry left), revoked (cancelled).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "s3fleet", Name: "chunk_duration_seconds", ConstLabels: labels,
			Help:    "Time to GET, write and flush one chunk.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		finalized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "s3fleet", Name: "objects_finalized_total", ConstLabels: labels,
			Help: "Objects this worker's assembler finished, by state (success, failed).",
		}, []string{"state"}),
	}
	w.verified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "s3fleet", Name: "objects_verified_total", ConstLabels: labels,
		Help: "Objects this worker finalized as a success, by the check their bytes passed (crc64nvme, crc32, crc32c, sha256, md5, none, ...).",
	}, []string{"check"})
	reg.MustRegister(w.bytes, w.chunks, w.latency, w.finalized, w.verified)
	// Every result and state exists from the start, at 0, so that a
	// dashboard's rate or increase of one reads 0, not "no data".
	for _, r := range []string{"done", "retried", "failed", "revoked"} {
		w.chunks.WithLabelValues(r)
	}
	for _, s := range []string{"success", "failed"} {
		w.finalized.WithLabelValues(s)
	}
	return w
}

// ChunkDone counts a chunk that landed.
func (w *Worker) ChunkDone(bytes int64, took time.Duration) {
	if w == nil {
		return
	}
	w.bytes.Add(float64(bytes))
	w.chunks.WithLabelValues("done").Inc()
	w.latency.Observe(took.Seconds())
}

// ChunkFailed counts a chunk that failed: result is retried, failed or
// revoked.
func (w *Worker) ChunkFailed(result string) {
	if w == nil {
		return
	}
	w.chunks.WithLabelValues(result).Inc()
}

// ObjectFinalized counts an object the assembler finished.
func (w *Worker) ObjectFinalized(state string) {
	if w == nil {
		return
	}
	w.finalized.WithLabelValues(state).Inc()
}

// ObjectVerified counts a successful object by the check its bytes passed.
func (w *Worker) ObjectVerified(check string) {
	if w == nil {
		return
	}
	if check == "" {
		check = "none"
	}
	w.verified.WithLabelValues(check).Inc()
}
