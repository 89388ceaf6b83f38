package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// The SlowDown measurement: how the fleet keeps to a store's request
// limit. A proxy in front of the S3 server plays S3's per-prefix limit: it
// answers 503 SlowDown to every request above the cap in each second,
// counted across all workers, and counts each second's requests. Four
// workers of 16 tasks each (which, unpaced, ask for several times the cap)
// download a prefix of small objects through it; the fleet's shared rate
// (package throttle) should hold every second after a warm-up to the cap.

const (
	slowdownPrefix  = "slowdown/"
	slowdownObjects = 1500
	slowdownSize    = 4 << 10
	slowdownWorkers = 4
	slowdownWarmUp  = 8 * time.Second
)

// slowdownResult is one run through the capped proxy.
type slowdownResult struct {
	cap     int
	objects int
	elapsed time.Duration
	series  []second // each second's requests at the proxy, in order
	err     error
}

// second is one second's requests at the proxy.
type second struct {
	requests, refused int
}

// rateCap is the proxy's limit: count, and refuse above cap, per second.
type rateCap struct {
	cap   int
	mu    sync.Mutex
	first int64
	secs  map[int64]*second
}

// admit counts a request; false when it is over the cap.
func (c *rateCap) admit() bool {
	now := time.Now().Unix()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first == 0 {
		c.first = now
	}
	s := c.secs[now]
	if s == nil {
		s = &second{}
		c.secs[now] = s
	}
	s.requests++
	if s.requests > c.cap {
		s.refused++
		return false
	}
	return true
}

// series is every second from the first request to the last, gaps as 0.
func (c *rateCap) series() []second {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []int64
	for k := range c.secs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	if len(keys) == 0 {
		return nil
	}
	out := make([]second, keys[len(keys)-1]-keys[0]+1)
	for _, k := range keys {
		out[k-keys[0]] = *c.secs[k]
	}
	return out
}

// startCapProxy serves a reverse proxy to target on a free loopback port
// until ctx ends; it returns its URL.
func startCapProxy(ctx context.Context, target string, c *rateCap) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.admit() {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return "http://" + ln.Addr().String(), nil
}

// slowdownFleet is what the SlowDown measurement needs of a suite: its
// Redis, a client of its S3 server (and that server's URL), the fleet's
// base environment (Redis and the rest, not the endpoint), its binaries
// and a scratch directory.
type slowdownFleet struct {
	rdb      redis.UniversalClient
	s3c      *s3.Client
	endpoint string
	env      []string
	bin      func(string) string
	tmp      string
}

// runSlowdown downloads slowdownObjects small objects through a proxy
// capped at capRate requests a second, with slowdownWorkers workers on
// this machine's loopback.
func runSlowdown(ctx context.Context, f slowdownFleet, capRate int) (res slowdownResult) {
	res.cap, res.objects = capRate, slowdownObjects
	if err := f.rdb.FlushDB(ctx).Err(); err != nil {
		res.err = fmt.Errorf("flush redis: %w", err)
		return res
	}
	defer func() { _ = f.rdb.FlushDB(context.WithoutCancel(ctx)).Err() }()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	body := bytes.Repeat([]byte("s"), slowdownSize)
	for i := range slowdownObjects {
		g.Go(func() error {
			key := fmt.Sprintf("%sobj-%05d", slowdownPrefix, i)
			_, err := f.s3c.PutObject(gctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		res.err = fmt.Errorf("put the small objects: %w", err)
		return res
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	limit := &rateCap{cap: capRate, secs: map[int64]*second{}}
	endpoint, err := startCapProxy(pctx, f.endpoint, limit)
	if err != nil {
		res.err = fmt.Errorf("start the capped proxy: %w", err)
		return res
	}
	env := append(append([]string{}, f.env...), "S3FLEET_ENDPOINT="+endpoint, "S3FLEET_ALLOW_DEST="+f.tmp, "S3FLEET_CONCURRENCY=16")
	var workers []*process
	defer func() {
		for _, w := range workers {
			w.terminate()
		}
	}()
	for i := range slowdownWorkers {
		w, err := startProcess(spec{name: fmt.Sprintf("slowdown worker %d", i+1), bin: f.bin("worker"), env: env, dir: f.tmp,
			log: filepath.Join(f.tmp, "logs", fmt.Sprintf("slowdown-worker-%d.log", i+1))})
		if err != nil {
			res.err = err
			return res
		}
		workers = append(workers, w)
	}
	time.Sleep(2 * time.Second) // joined: the first rate splits by the live workers
	began := time.Now()
	p, err := startProcess(spec{name: "enqueue", bin: f.bin("enqueue"), env: env, dir: f.tmp,
		args: []string{"s3://" + bucket + "/" + slowdownPrefix, filepath.Join(f.tmp, "out", "slowdown") + "/", "--wait", "--quiet", "--job", "slowdown"},
		log:  filepath.Join(f.tmp, "logs", "slowdown-enqueue.log")})
	if err != nil {
		res.err = err
		return res
	}
	<-p.done
	res.elapsed = time.Since(began)
	if p.err != nil {
		res.err = fmt.Errorf("enqueue: %w: %s", p.err, p.logTail())
	}
	res.series = limit.series()
	return res
}

// summary: the busiest second after the warm-up (the last second, cut
// short, left out), and the refused requests before and after it.
func (r slowdownResult) summary() (worst int, refusedEarly, refusedLate int) {
	for i, sec := range r.series {
		if time.Duration(i)*time.Second < slowdownWarmUp {
			refusedEarly += sec.refused
			continue
		}
		refusedLate += sec.refused
		if i < len(r.series)-1 && sec.requests > worst {
			worst = sec.requests
		}
	}
	return worst, refusedEarly, refusedLate
}

// summaryLine is the measurement in a sentence, for the report's summary.
func (r slowdownResult) summaryLine() string {
	if r.cap == 0 {
		return ""
	}
	if r.err != nil {
		return fmt.Sprintf("\nSlowDown (a store refusing above %d requests/s): failed: %v\n", r.cap, r.err)
	}
	worst, early, late := r.summary()
	return fmt.Sprintf("\nSlowDown, %d workers × 16 tasks against a store refusing above %d requests/s fleet-wide: after a %v warm-up the busiest second saw %d (%.2f× the cap; goal ≤ 1.1×), %d requests refused in the warm-up and %d after it, %d objects in %.1f s, none failed.\n",
		slowdownWorkers, r.cap, slowdownWarmUp, worst, float64(worst)/float64(r.cap), early, late, r.objects, r.elapsed.Seconds())
}

func (r slowdownResult) report() string {
	if r.cap == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## SlowDown: the fleet keeps to a store's request limit\n\n")
	fmt.Fprintf(&b, "A proxy in front of the S3 server answers 503 SlowDown to every request above %d a second, counted across all workers, as S3 limits a prefix. "+
		"%d workers of 16 tasks each download %d objects of %d KiB through it; the fleet shares one rate per bucket and prefix through Redis (cut on SlowDown, grown slowly on success). "+
		"Goal: after a %v warm-up no second above 1.1× the cap, no object failed.\n\n", r.cap, slowdownWorkers, r.objects, slowdownSize>>10, slowdownWarmUp)
	if r.err != nil {
		fmt.Fprintf(&b, "Failed: %v\n", r.err)
		return b.String()
	}
	worst, early, late := r.summary()
	fmt.Fprintf(&b, "| cap (requests/s) | objects | time | busiest second after the warm-up | refused in the warm-up | refused after it |\n|--:|--:|--:|--:|--:|--:|\n")
	fmt.Fprintf(&b, "| %d | %d | %.1f s | %d (%.2f× the cap) | %d | %d |\n\n", r.cap, r.objects, r.elapsed.Seconds(), worst, float64(worst)/float64(r.cap), early, late)
	b.WriteString("Requests a second at the proxy (refused ones included), from the first:\n\n```\n")
	for i, sec := range r.series {
		fmt.Fprintf(&b, "%3ds %4d %s\n", i, sec.requests, strings.Repeat("#", sec.requests*50/max(r.cap*2, 1)))
	}
	b.WriteString("```\n")
	return b.String()
}
