package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// Proxy is an HTTP reverse proxy in front of the S3 server that can tamper
// with responses, for fault tests. Requests pass unchanged (SigV4 signs the
// Host the client used, and the proxy keeps it).
type Proxy struct {
	URL string
	// Tamper, when set, may change a response before the client sees it.
	tamper atomic.Pointer[func(*http.Request, *http.Response)]
	// Hits counts requests seen.
	Hits atomic.Int64
}

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
		if f := p.tamper.Load(); f != nil {
			(*f)(resp.Request, resp)
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Hits.Add(1)
		rp.ServeHTTP(w, r)
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
