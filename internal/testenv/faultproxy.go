package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Action is what a FaultProxy does to one request.
type Action int

// The faults a FaultProxy injects.
const (
	Pass   Action = iota // forward the request and its response unchanged
	Status               // answer with Fault.Status and an S3 error document, without contacting S3
	Cut                  // send Fault.After bytes of the body, then close the connection (FIN)
	Reset                // send Fault.After bytes of the body, then reset the connection (RST)
	Stall                // send Fault.After bytes of the body, then send nothing until the client hangs up
)

func (a Action) String() string {
	return [...]string{"pass", "status", "cut", "reset", "stall"}[a]
}

// Fault is what happens to one request. The zero Fault passes it.
type Fault struct {
	Action Action
	Status int    // for Status: the HTTP status
	Code   string // for Status: the S3 error code (SlowDown, InternalError, …)
	After  int64  // for Cut, Reset and Stall: body bytes sent first
	Delay  time.Duration
	Rate   int64 // body bytes per second; 0: as fast as S3 sends
}

// FaultFunc decides the fault of a request; it may be called from many
// goroutines at once.
type FaultFunc func(r *http.Request) Fault

// FaultProxy is an HTTP proxy in front of the S3 server that injects faults
// below the HTTP layer too: it can cut or reset a connection mid-body, stall
// a body, or throttle it. Requests pass unchanged (SigV4 signs the Host the
// client used, and the proxy keeps it).
type FaultProxy struct {
	URL string

	target *url.URL
	rt     *http.Transport
	rule   atomic.Pointer[FaultFunc]
	done   chan struct{} // closed when the test ends: stalls give up

	// Requests counts every request; Injected those given a fault other
	// than Pass (a delay or a throttle alone does not count).
	Requests, Injected atomic.Int64

	mu   sync.Mutex
	gets map[string]int // object GETs by path
}

// StartFaultProxy starts a fault proxy to target (http://host:port) on a
// free loopback port, stopped when the test ends.
func StartFaultProxy(t T, target string) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{
		target: u, done: make(chan struct{}), gets: map[string]int{},
		rt: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true, ResponseHeaderTimeout: time.Minute},
	}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		close(p.done)
		srv.Close()
		p.rt.CloseIdleConnections()
	})
	p.URL = srv.URL
	return p
}

// SetRule installs f; nil passes every request.
func (p *FaultProxy) SetRule(f FaultFunc) {
	if f == nil {
		p.rule.Store(nil)
		return
	}
	p.rule.Store(&f)
}

// ObjectGETs returns how many GETs of object bytes each path
// (/bucket/key) saw: chunks' ranged GETs and batches' whole-object GETs.
func (p *FaultProxy) ObjectGETs() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.gets))
	for k, v := range p.gets {
		out[k] = v
	}
	return out
}

// TotalObjectGETs is the sum of ObjectGETs.
func (p *FaultProxy) TotalObjectGETs() int {
	n := 0
	for _, v := range p.ObjectGETs() {
		n += v
	}
	return n
}

// IsObjectGET reports whether r is a GetObject: a chunk's ranged GET or a
// batch's GET of a whole small object (a GET that is no listing).
func IsObjectGET(r *http.Request) bool {
	return r.Method == http.MethodGet && !IsList(r) && strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1
}

// IsList reports whether r is a ListObjectsV2 call.
func IsList(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2"
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.Requests.Add(1)
	if IsObjectGET(r) {
		p.mu.Lock()
		p.gets[r.URL.Path]++
		p.mu.Unlock()
	}
	var f Fault
	if rule := p.rule.Load(); rule != nil {
		f = (*rule)(r)
	}
	if f.Action != Pass {
		p.Injected.Add(1)
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		case <-p.done:
			return
		}
	}
	if f.Action == Status {
		writeS3Error(w, f.Status, f.Code)
		return
	}

	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host = p.target.Scheme, p.target.Host
	out.RequestURI = ""
	out.Host = r.Host // keep the signed Host header
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()

	if f.Action == Pass {
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = p.copyBody(w, resp.Body, -1, f.Rate)
		return
	}
	p.breakBody(w, resp, f)
}

// breakBody sends the response's head and f.After bytes of its body on the
// raw connection, then cuts, resets or stalls it.
func (p *FaultProxy) breakBody(w http.ResponseWriter, resp *http.Response, f Fault) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	h := resp.Header.Clone()
	h.Del("Transfer-Encoding")
	h.Del("Connection")
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	fmt.Fprintf(rw, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	_ = h.Write(rw)
	_, _ = rw.WriteString("\r\n")
	_, _ = p.copyBody(flushWriter{rw.Writer}, resp.Body, f.After, f.Rate)
	_ = rw.Flush()
	switch f.Action {
	case Reset:
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close sends RST, not FIN
		}
	case Stall:
		// Nothing more until the client gives up (its read timeout), the
		// test ends, or five minutes pass.
		gone := make(chan struct{})
		go func() {
			defer close(gone)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
			_, _ = io.Copy(io.Discard, conn)
		}()
		select {
		case <-gone:
		case <-p.done:
		}
	}
}

// copyBody copies at most limit bytes (all when negative) of src to w, at
// most rate bytes per second when rate > 0, and stops when the test ends.
func (p *FaultProxy) copyBody(w io.Writer, src io.Reader, limit, rate int64) (int64, error) {
	if limit >= 0 {
		src = io.LimitReader(src, limit)
	}
	fl, _ := w.(interface{ Flush() })
	if rw, ok := w.(http.ResponseWriter); ok {
		fl = flusherOf(rw)
	}
	buf := make([]byte, 32<<10)
	start := time.Now()
	var n int64
	for {
		select {
		case <-p.done:
			return n, context.Canceled
		default:
		}
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
			if rate > 0 {
				if fl != nil {
					fl.Flush()
				}
				if ahead := time.Duration(float64(n)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
					select {
					case <-time.After(ahead):
					case <-p.done:
						return n, context.Canceled
					}
				}
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func flusherOf(w http.ResponseWriter) interface{ Flush() } {
	return flushFunc(func() { _ = http.NewResponseController(w).Flush() })
}

type flushFunc func()

func (f flushFunc) Flush() { f() }

// flushWriter pushes each piece of a throttled body onto the connection.
type flushWriter struct{ w *bufio.Writer }

func (f flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f flushWriter) Flush()                      { _ = f.w.Flush() }

// writeS3Error answers as S3 does when it refuses a request.
func writeS3Error(w http.ResponseWriter, status int, code string) {
	if code == "" {
		code = "InternalError"
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>injected by the test's fault proxy</Message><RequestId>fault</RequestId></Error>`, code)
}
