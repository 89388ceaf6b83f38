package testenv

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is an HTTP reverse proxy in front of the S3 server that records
// every request with its answer, can hold requests, and can tamper with
// responses, for fault tests. Requests pass unchanged (SigV4 signs the
// Host the client used, and the proxy keeps it).
type Proxy struct {
	URL string
	// Tamper, when set, may change a response before the client sees it.
	tamper atomic.Pointer[func(*http.Request, *http.Response)]
	// gate, when set, runs before a request is forwarded and may block.
	gate atomic.Pointer[func(*http.Request)]
	// Hits counts requests seen.
	Hits atomic.Int64
	mu   sync.Mutex
	seen []Seen
}

// Seen is one request the proxy saw, with the answer it forwarded.
type Seen struct {
	Method, Path, Query, Range, IfMatch string
	Status                              int
	ETag, ContentRange                  string
	At                                  time.Time // when the request arrived
}

type seenKey struct{}

// StartProxy starts a proxy to target (http://host:port) for the test.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	orig := rp.Director
	rp.Director = func(r *http.Request) {
		host := r.Host
		orig(r)
		r.Host = host // keep the signed Host header
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		if i, ok := resp.Request.Context().Value(seenKey{}).(int); ok {
			p.mu.Lock()
			p.seen[i].Status, p.seen[i].ETag = resp.StatusCode, resp.Header.Get("ETag")
			p.seen[i].ContentRange = resp.Header.Get("Content-Range")
			p.mu.Unlock()
		}
		if f := p.tamper.Load(); f != nil {
			(*f)(resp.Request, resp)
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Hits.Add(1)
		p.mu.Lock()
		i := len(p.seen)
		p.seen = append(p.seen, Seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Range: r.Header.Get("Range"), IfMatch: r.Header.Get("If-Match"), At: time.Now()})
		p.mu.Unlock()
		if g := p.gate.Load(); g != nil {
			if (*g)(r); r.Context().Err() != nil {
				return
			}
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), seenKey{}, i)))
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// SetTamper installs f; nil removes it.
func (p *Proxy) SetTamper(f func(*http.Request, *http.Response)) {
	if f == nil {
		p.tamper.Store(nil)
		return
	}
	p.tamper.Store(&f)
}

// SetGate installs g, run before each request is forwarded: it may block,
// and must give up when the request's context ends. nil removes it.
func (p *Proxy) SetGate(g func(*http.Request)) {
	if g == nil {
		p.gate.Store(nil)
		return
	}
	p.gate.Store(&g)
}

// Requests returns what the proxy saw so far, in order.
func (p *Proxy) Requests() []Seen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Seen(nil), p.seen...)
}

// FlipByte returns a reader that inverts the byte at offset off of r.
func FlipByte(r io.ReadCloser, off int64) io.ReadCloser {
	return &flipper{ReadCloser: r, at: off}
}

type flipper struct {
	io.ReadCloser
	pos, at int64
}

func (f *flipper) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if f.at >= f.pos && f.at < f.pos+int64(n) {
		p[f.at-f.pos] ^= 0xff
	}
	f.pos += int64(n)
	return n, err
}
