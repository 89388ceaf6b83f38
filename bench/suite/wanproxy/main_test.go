package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// startProxy runs a proxy on loopback in front of upstream.
func startProxy(t *testing.T, upstream string, latency time.Duration, rate int64) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &proxy{upstream: upstream, latency: latency, rate: rate, readSize: 256 << 10}
	if err := p.check(); err != nil {
		t.Fatal(err)
	}
	go p.serve(l)
	return l.Addr().String()
}

// startServer runs handle on every connection of a loopback listener.
func startServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	patternBytes()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

// echo writes back what it reads, and half-closes at EOF.
func echo(c net.Conn) {
	if _, err := io.Copy(c, c); err == nil {
		c.(*net.TCPConn).CloseWrite()
	}
}

// source answers each 8-byte big-endian count with that many bytes of
// pattern, until EOF: a keep-alive connection of requests and responses.
func source(c net.Conn) {
	var req [8]byte
	for {
		if _, err := io.ReadFull(c, req[:]); err != nil {
			return
		}
		if _, err := c.Write(pattern(int(binary.BigEndian.Uint64(req[:])))); err != nil {
			return
		}
	}
}

// pattern is n bytes of a fixed pattern (at most 16 MiB), made once
// before any server starts (so it takes no response's time).
func pattern(n int) []byte { return patternBytes()[:n] }

var patternBytes = sync.OnceValue(func() []byte {
	b := make([]byte, 16<<20)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
})

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// request asks a source for n bytes, checks them, and returns when the
// first and the last arrived.
func request(c net.Conn, n int) (first, last time.Time, err error) {
	var req [8]byte
	binary.BigEndian.PutUint64(req[:], uint64(n))
	if _, err := c.Write(req[:]); err != nil {
		return first, last, err
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got[:1]); err != nil {
		return first, last, err
	}
	first = time.Now()
	if _, err := io.ReadFull(c, got[1:]); err != nil {
		return first, last, err
	}
	last = time.Now()
	if !bytes.Equal(got, pattern(n)) {
		return first, last, io.ErrUnexpectedEOF
	}
	return first, last, nil
}

// Both directions arrive intact, and an end of stream crosses the proxy
// both ways (the client half-closes, the server then does).
func TestIntactAndHalfClose(t *testing.T) {
	addr := startProxy(t, startServer(t, echo), 5*time.Millisecond, 200_000_000)
	c := dial(t, addr)
	want := make([]byte, 3<<20+12345)
	rand.Read(want)
	go func() {
		c.Write(want)
		c.CloseWrite()
	}()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want the %d sent", len(got), len(want))
	}
}

// Every response on a keep-alive connection comes at least latency after
// its request.
func TestLatencyEveryResponse(t *testing.T) {
	const latency = 50 * time.Millisecond
	addr := startProxy(t, startServer(t, source), latency, 0)
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 3 {
		start := time.Now()
		first, _, err := request(c, 100+i*100_000)
		if err != nil {
			t.Fatal(err)
		}
		d := first.Sub(start)
		t.Logf("response %d: first byte after %s", i+1, d)
		if d < latency {
			t.Errorf("response %d: first byte after %s, want at least %s", i+1, d, latency)
		}
		if d > 4*latency {
			t.Errorf("response %d: first byte after %s, want about %s", i+1, d, latency)
		}
	}
}

// One connection gets the rate, two get twice that.
func TestRatePerConnection(t *testing.T) {
	const (
		latency = 20 * time.Millisecond
		rate    = 40_000_000
		n       = 8_000_000 // 0.2 s at the rate
	)
	if raceEnabled {
		t.Skip("throughput under the race detector says nothing")
	}
	addr := startProxy(t, startServer(t, source), latency, rate)
	measure := func(conns int) float64 {
		cs := make([]net.Conn, conns)
		for i := range cs {
			cs[i] = dial(t, addr)
			cs[i].SetDeadline(time.Now().Add(10 * time.Second))
		}
		var wg sync.WaitGroup
		errs := make([]error, conns)
		start := time.Now()
		for i, c := range cs {
			wg.Go(func() { _, _, errs[i] = request(c, n) })
		}
		wg.Wait()
		elapsed := time.Since(start)
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		// The first byte waits for the latency, then the bytes flow.
		got := float64(conns*n) / (elapsed - latency).Seconds()
		t.Logf("%d connection(s): %d bytes in %s: %.1f MB/s after the latency", conns, conns*n, elapsed, got/1e6)
		return got
	}
	for _, tc := range []struct {
		conns int
		want  float64
	}{{1, rate}, {2, 2 * rate}} {
		if got := measure(tc.conns); got < 0.85*tc.want || got > 1.15*tc.want {
			t.Errorf("%d connection(s): %.1f MB/s, want %.1f MB/s ± 15%%", tc.conns, got/1e6, tc.want/1e6)
		}
	}
}

// A client that goes away mid-response frees its connection to the
// server.
func TestClientGoesAway(t *testing.T) {
	closed := make(chan struct{})
	upstream := startServer(t, func(c net.Conn) {
		defer close(closed)
		for {
			if _, err := c.Write(make([]byte, 64<<10)); err != nil {
				return
			}
		}
	})
	addr := startProxy(t, upstream, time.Millisecond, 10_000_000)
	c := dial(t, addr)
	if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the server's connection still open 5 s after the client closed its own")
	}
}
