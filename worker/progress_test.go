package worker_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/config"
	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// slowBody hands a request's body on at rate bytes a second.
type slowBody struct {
	r     io.ReadCloser
	rate  int64
	start time.Time
	n     int64
}

func (b *slowBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p[:min(len(p), 16<<10)])
	b.n += int64(n)
	if ahead := time.Duration(float64(b.n)/float64(b.rate)*float64(time.Second)) - time.Since(b.start); ahead > 0 {
		time.Sleep(ahead)
	}
	return n, err
}

func (b *slowBody) Close() error { return b.r.Close() }

// startSlowUplink is a proxy to target that passes every PUT's body on at
// rate bytes a second (its responses as they come): a worker's slow link
// to the store it writes to. The bandwidth setting cannot play it over
// plain HTTP: it paces the pass that reads a local file for its CRC (or
// the GET that fills the spool), after which the part goes at once.
func startSlowUplink(t *testing.T, target string, rate int64) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u) // keeps the Host the request was signed for
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.ContentLength > 0 {
			r.Body = &slowBody{r: r.Body, rate: rate, start: time.Now()}
		}
		rp.ServeHTTP(w, r)
	}))
	// A small receive buffer, so the connection does not take in MiBs
	// the proxy has not read (loopback's would).
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// progressSize is the object the progress tests write: a part of 16 MiB
// (they run with chunk_size 16 MiB: S3's parts are of 5 MiB at least, and
// a connection's buffers take in a few MiB at once, see below) and a
// small one.
const progressSize = 16*mib + 12345

// TestWriteProgress: a chunk that writes to S3 reports the bytes it has
// sent while its part is on the way, as a download's chunk reports those
// it has received: an upload of a local file, and a copy from one
// endpoint to another (streamed through the worker, spooled over plain
// HTTP), through a link slow enough that a part takes about 4 s. While
// the transfer runs its record shows bytes moving before all its chunks
// have landed, never more than the bytes not landed yet; at the end
// nothing moves and every byte is done.
//
// A figure is what has gone to the connection: the socket's send buffer
// (up to tcp_wmem's most, 4 MiB on loopback here) takes in the last MiBs
// of a part at once, and its figure reaches the part's length that long
// before the store has them all (the part lands only on its answer).
func TestWriteProgress(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t)
	f.S3.CreateBucket(t, "src")
	f.S3.CreateBucket(t, "dst")
	vc := f.S3.Client(t)
	root := t.TempDir()
	data := randomBytes(t, progressSize)
	if err := os.WriteFile(filepath.Join(root, "up.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	put(t, vc, "src", "obj", data)

	cfg := f.Config()
	cfg.ChunkSize = 16 * mib
	cfg.Remotes = map[string]config.Remote{"slow": {Endpoint: startSlowUplink(t, f.S3.Endpoint, 4*mib), Region: testenv.Region, PathStyle: true}}
	cfg.AllowWrite = []string{"slow://dst/"}
	cfg.AllowSource = []string{root}
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	wantProgress(t, c, "upload", filepath.Join(root, "up.bin"), "slow://dst/up.bin")
	sameBytes(t, vc, "dst", "up.bin", data)
	wantProgress(t, c, "copy", "s3://src/obj", "slow://dst/obj") // another endpoint: no server-side copy
	sameBytes(t, vc, "dst", "obj", data)
}

// TestWriteProgressTLS is TestWriteProgress over TLS (to MinIO), where a
// part streams from its source as it is sent: the worker's bandwidth cap
// paces the send itself, at 4 MiB/s.
func TestWriteProgressTLS(t *testing.T) {
	r := newCopyRig(t, true)
	root := t.TempDir()
	data := randomBytes(t, progressSize)
	if err := os.WriteFile(filepath.Join(root, "up.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	put(t, r.vc, "src", "obj", data)
	cfg := r.cfg
	cfg.ChunkSize = 16 * mib
	cfg.Bandwidth = 4 * mib
	cfg.AllowSource = []string{root}
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	wantProgress(t, c, "upload", filepath.Join(root, "up.bin"), "minio://dst/up.bin")
	sameBytes(t, r.mc, "dst", "up.bin", data)
	wantProgress(t, c, "copy", "s3://src/obj", "minio://dst/obj")
	sameBytes(t, r.mc, "dst", "obj", data)
}

// wantProgress copies src (progressSize bytes) to dest and watches its
// transfer's record, and its job's, until the job is done: bytes must be
// moving before every chunk has landed, never more than have not landed,
// and at the end none, with every byte done.
func wantProgress(t *testing.T, c *fleettest.Client, name, src, dest string) {
	t.Helper()
	const size = progressSize
	ctx := context.Background()
	began := time.Now()
	sum, err := c.Submit(ctx, fleettest.Request(src, dest))
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, o := range c.Objects(t, sum.Job) {
		id = o.ID
	}
	var seen, seenJob bool
	var x ledger.Transfer
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if x, err = c.Ledger.GetTransfer(ctx, id); err != nil {
			t.Fatal(err)
		}
		j, err := c.Ledger.GetJob(ctx, sum.Job)
		if err != nil {
			t.Fatal(err)
		}
		if x.Moving < 0 || x.BytesDone+x.Moving > size {
			t.Fatalf("%s: %d bytes moving with %d of %d done", name, x.Moving, x.BytesDone, size)
		}
		if x.Moving > 0 && x.BytesDone < size {
			if !seen {
				t.Logf("%s: %d bytes moving, %d landed, after %s", name, x.Moving, x.BytesDone, time.Since(began).Round(time.Millisecond))
			}
			seen = true
		}
		seenJob = seenJob || (j.Moving > 0 && j.BytesDone < size)
		if j.Done() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after a minute: %+v", name, x)
		}
	}
	if x, err = c.Ledger.GetTransfer(ctx, id); err != nil || x.State != ledger.Success {
		c.LogObjects(t, sum.Job)
		t.Fatalf("%s: %s %v", name, x.State, err)
	}
	t.Logf("%s: %d chunks in %s", name, x.Chunks, time.Since(began).Round(time.Millisecond))
	if !seen || !seenJob {
		t.Errorf("%s: no bytes moving before the chunks landed (transfer %v, job %v)", name, seen, seenJob)
	}
	if x.Moving != 0 || x.BytesDone != size {
		t.Errorf("%s: at the end %d bytes moving and %d done, want 0 and %d", name, x.Moving, x.BytesDone, size)
	}
}
