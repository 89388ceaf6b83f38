// Command wanproxy is the suite's emulated WAN: a TCP proxy in front of the
// S3 server that delays every byte of the responses and caps the bandwidth
// of each connection, as S3 behaves from a cloud host. It replaces
// toxiproxy, whose own CPU time (about 1.7 CPU-s per GiB on 2 cores) was
// the bottleneck of every contender.
//
// Downstream (server to client), each connection has a reader goroutine and
// a writer goroutine sharing a ring buffer (-queue bytes, the bound of the
// connection's memory). The reader reads up to -read-size bytes at a time
// from the server into the ring and stamps each read with the time; the
// writer writes each read to the client -latency after its stamp (a
// pipeline delay, like toxiproxy's latency toxic: every response on a
// keep-alive connection is delayed, not only the first), no faster than
// -rate bytes/s for that connection (each read leaves once the previous
// ones and its own bytes have had their time at -rate; no cap across
// connections). Upstream (client to server) is copied as is.
//
// A side that ends its stream (EOF) is half-closed on the other side once
// the bytes before it are delivered; a side that fails closes both
// connections. Nothing is logged per connection unless -v is given.
//
// It runs Go code on one thread (-procs 1): on 2 cores that costs about a
// fifth less CPU than Go's default, spent waking threads for the
// goroutines' hand-offs, and a thread moves 1 GiB/s and more.
//
//	wanproxy -listen 127.0.0.1:9001 -upstream 127.0.0.1:9000 -latency 20ms -rate 90000000
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept clients on")
	upstream := flag.String("upstream", "", "address of the server (required)")
	latency := flag.Duration("latency", 20*time.Millisecond, "delay of every byte from the server to the client")
	rate := flag.Int64("rate", 90_000_000, "bandwidth of each connection from the server to the client, bytes/s; 0: no cap")
	readSize := flag.Int("read-size", 256<<10, "largest read from the server: the unit the delay and the pacing work on")
	queue := flag.Int("queue", 0, "bytes each connection may hold on their way to the client (default: twice rate × latency, at least 4 MiB; 32 MiB without a rate)")
	procs := flag.Int("procs", 1, "GOMAXPROCS: 1 keeps the hand-offs between each connection's goroutines on one thread, "+
		"which costs less CPU than waking a second one (0: Go's default)")
	verbose := flag.Bool("v", false, "log every connection's errors")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	if *upstream == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: wanproxy -listen ADDR -upstream ADDR [-latency 20ms] [-rate BYTES_PER_S]")
		os.Exit(2)
	}
	p := &proxy{upstream: *upstream, latency: *latency, rate: *rate, readSize: *readSize, queue: *queue}
	if *verbose {
		p.logf = log.Printf
	}
	if err := p.check(); err != nil {
		log.Fatalf("wanproxy: %v", err)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("wanproxy: %v", err)
	}
	log.Printf("wanproxy: %s -> %s, latency %s, %d bytes/s per connection, queue %d bytes per connection",
		l.Addr(), p.upstream, p.latency, p.rate, p.queueSize())
	if err := p.serve(l); err != nil {
		log.Fatalf("wanproxy: %v", err)
	}
}

// proxy is the configuration; serve runs it.
type proxy struct {
	upstream string
	latency  time.Duration
	rate     int64 // bytes/s of each connection downstream; 0: no cap
	readSize int
	queue    int // 0: queueSize's default
	logf     func(format string, args ...any)

	once sync.Once
	pool sync.Pool // of *[]byte of queueSize bytes
}

func (p *proxy) check() error {
	switch {
	case p.latency < 0:
		return fmt.Errorf("-latency must not be negative")
	case p.rate < 0:
		return fmt.Errorf("-rate must not be negative")
	case p.readSize < 1:
		return fmt.Errorf("-read-size must be positive")
	case p.queue < 0:
		return fmt.Errorf("-queue must not be negative")
	}
	return nil
}

// queueSize is the ring buffer of each connection's downstream: enough for
// the bytes in flight at full rate (rate × latency) twice over, so that the
// ring never slows a connection below its cap.
func (p *proxy) queueSize() int {
	if p.queue > 0 {
		return max(p.queue, p.readSize)
	}
	if p.rate == 0 {
		return max(32<<20, p.readSize)
	}
	inFlight := float64(p.rate) * p.latency.Seconds()
	return max(4<<20, int(2*inFlight), 2*p.readSize)
}

// serve accepts clients on l until it fails.
func (p *proxy) serve(l net.Listener) error {
	p.once.Do(func() {
		size := p.queueSize()
		p.pool.New = func() any { b := make([]byte, size); return &b }
	})
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		if err != nil {
			// Out of descriptors, say: wait for some to be freed.
			log.Printf("wanproxy: accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go p.handle(c)
	}
}

func (p *proxy) debugf(format string, args ...any) {
	if p.logf != nil {
		p.logf(format, args...)
	}
}

// handle proxies one client connection until both directions have ended.
func (p *proxy) handle(client net.Conn) {
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		p.debugf("dial %s: %v", p.upstream, err)
		client.Close()
		return
	}
	var closeBoth sync.Once
	abort := func() {
		closeBoth.Do(func() {
			client.Close()
			server.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Upstream: as is. TCPConn.ReadFrom splices on Linux.
		if _, err := io.Copy(server, client); err != nil {
			p.debugf("client -> server: %v", err)
			abort()
			return
		}
		closeWrite(server)
	}()
	if err := p.downstream(client, server); err != nil {
		p.debugf("server -> client: %v", err)
		abort()
	} else {
		closeWrite(client)
	}
	<-done
	abort()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// chunk is one read from the server: its place in the ring and its time.
type chunk struct {
	off, n int
	at     time.Time
}

// ring is the bytes read from the server and not yet written to the client.
// The reader owns the write end, the writer the read end; free space
// passes from the writer to the reader through released.
type ring struct {
	buf      []byte
	mu       sync.Mutex
	cond     sync.Cond
	released int64 // bytes the writer has written, in all
	stopped  bool  // the writer has given up: the reader must stop
}

// downstream copies src (the server) to dst (the client) with the delay
// and the pacing, and returns once src has ended and every byte read from
// it has been written, or on the first error.
func (p *proxy) downstream(dst, src net.Conn) error {
	bp := p.pool.Get().(*[]byte)
	r := &ring{buf: *bp}
	r.cond.L = &r.mu
	// A record per read; 1024 of them, like toxiproxy's latency toxic, so
	// small reads do not stall the pipe either.
	chunks := make(chan chunk, 1024)
	readErr := make(chan error, 1)
	go func() { readErr <- p.fill(r, src, chunks) }()
	werr := p.drain(r, dst, chunks)
	if werr != nil {
		// Unblock a read in progress; fill then closes chunks.
		_ = src.SetReadDeadline(time.Unix(1, 0))
		for range chunks {
		}
	}
	rerr := <-readErr // fill has returned: the ring is free
	p.pool.Put(bp)
	if werr != nil {
		return werr
	}
	return rerr
}

// fill reads src into the ring until src ends (nil at EOF) or the writer
// stops, then closes chunks.
func (p *proxy) fill(r *ring, src net.Conn, chunks chan<- chunk) error {
	defer close(chunks)
	size := int64(len(r.buf))
	var written int64 // bytes read into the ring, in all
	for {
		r.mu.Lock()
		for written-r.released == size && !r.stopped {
			r.cond.Wait()
		}
		stopped, free := r.stopped, size-(written-r.released)
		r.mu.Unlock()
		if stopped {
			return nil
		}
		off := int(written % size)
		n := min(int(free), len(r.buf)-off, p.readSize)
		k, err := src.Read(r.buf[off : off+n])
		if k > 0 {
			written += int64(k)
			chunks <- chunk{off: off, n: k, at: time.Now()}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// burst is how far behind its schedule the writer may catch up at once
// (after a late wake-up or a slow write), rather than lose that time.
const burst = 5 * time.Millisecond

// drain writes every chunk to dst at its time. On a write error it tells
// fill to stop and returns.
func (p *proxy) drain(r *ring, dst net.Conn, chunks <-chan chunk) error {
	var next time.Time // when the link is free: the previous chunk's departure
	for c := range chunks {
		due := c.at.Add(p.latency)
		if p.rate > 0 {
			start := due
			if next.After(start) {
				start = next
			}
			if floor := time.Now().Add(-burst); floor.After(start) {
				start = floor
			}
			due = start.Add(time.Duration(float64(c.n) / float64(p.rate) * float64(time.Second)))
			next = due
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(r.buf[c.off : c.off+c.n]); err != nil {
			r.mu.Lock()
			r.stopped = true
			r.cond.Signal()
			r.mu.Unlock()
			return err
		}
		r.mu.Lock()
		r.released += int64(c.n)
		r.cond.Signal()
		r.mu.Unlock()
	}
	return nil
}
