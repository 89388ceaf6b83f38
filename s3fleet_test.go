package s3fleet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/worker"
)

// The fleet every test and example of the package talks to: a real
// redis-server, versitygw behind a proxy that serves keys under slow/ at
// 1 MiB/s a GET, and one worker in this process. OptionsFromEnv finds them
// through the S3FLEET_* variables TestMain sets.
var fleet struct {
	s3    *testenv.S3
	redis *testenv.Redis
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	st := &testenv.Standalone{}
	defer st.Close()
	fleet.redis = testenv.StartRedis(st)
	fleet.s3 = testenv.StartS3(st)
	proxy := testenv.StartFaultProxy(st, fleet.s3.Endpoint)
	proxy.SetRule(func(r *http.Request) testenv.Fault {
		if testenv.IsObjectGET(r) && strings.Contains(r.URL.Path, "/slow/") {
			return testenv.Fault{Rate: 1 << 20}
		}
		if testenv.IsObjectGET(r) && strings.Contains(r.URL.Path, "/crawl/") {
			return testenv.Fault{Rate: 256 << 10} // 4 s a 1 MiB chunk
		}
		return testenv.Fault{}
	})
	for _, kv := range fleet.s3.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	for k, v := range map[string]string{
		"S3FLEET_REDIS": fleet.redis.URL, "S3FLEET_ENDPOINT": proxy.URL, "S3FLEET_CHUNK_SIZE": "1MiB",
		"S3FLEET_THRESHOLD": "1MiB", "S3FLEET_POLL_INTERVAL": "50ms", "S3FLEET_ALLOW_DEST": os.TempDir(),
		"S3FLEET_RETRY_DELAY": "50ms", "S3FLEET_LOG_LEVEL": "warn",
		"S3FLEET_ALLOW_WRITE": "s3://out/", "S3FLEET_ALLOW_SOURCE": os.TempDir(), "S3FLEET_ALLOW_DELETE": "s3://out/gone/",
	} {
		os.Setenv(k, v)
	}
	fleet.s3.CreateBucket(st, "bkt")
	fleet.s3.CreateBucket(st, "out")
	fleet.s3.Put(st, "bkt", "reports/2026.csv", strings.NewReader(strings.Repeat("day,bytes\n", 100)), false)
	for i := range 20 {
		fleet.s3.PutRandom(st, "bkt", fmt.Sprintf("logs/%02d.log", i), int64(100+i), false)
	}
	fleet.s3.PutRandom(st, "bkt", "logs/big.log", 3<<20, false)
	fleet.s3.PutRandom(st, "bkt", "slow/big.bin", 6<<20, false)
	fleet.s3.PutRandom(st, "bkt", "crawl/2m.bin", 2<<20, false)

	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		if err := worker.Run(ctx, opts, log); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "worker:", err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	return m.Run()
}

// connect is a client of the package's fleet.
func connect(t *testing.T) *s3fleet.Client {
	t.Helper()
	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	c, err := s3fleet.Connect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDownloadFuture: Download returns while the bytes are still on their
// way (a 6 MiB object at 1 MiB/s a GET), Done and State say so, and Result
// blocks until the file is there, every byte as uploaded, with its check
// and its Meta.
func TestDownloadFuture(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	dest := filepath.Join(t.TempDir(), "big.bin")
	tr, err := c.Download(ctx, "s3://bkt/slow/big.bin", dest)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Done() {
		t.Fatal("Done right after Download, before the bytes could land")
	}
	if st, err := tr.State(ctx); err != nil || st.Final() {
		t.Fatalf("state right after Download: %v %v, want queued or running", st, err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("the file is there before Result")
	}
	m := tr.Meta()
	if m.Source != "s3://bkt/slow/big.bin" || m.Dest != dest || m.Size != 6<<20 || m.TransferID == "" || m.JobID == "" {
		t.Fatalf("meta %+v", m)
	}
	rec, err := tr.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != s3fleet.Success || rec.State.String() != "success" || rec.Check == "" || rec.Check == "none" || rec.Finished.IsZero() {
		t.Fatalf("record %+v", rec)
	}
	if !tr.Done() {
		t.Fatal("not Done after Result")
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if want := get(t, "slow/big.bin"); !bytes.Equal(got, want) {
		t.Fatalf("the file differs from the object (%d bytes, want %d)", len(got), len(want))
	}
}

// get reads an object straight from the S3 server.
func get(t *testing.T, key string) []byte {
	t.Helper()
	return getFrom(t, "bkt", key)
}

// getFrom reads an object of any bucket straight from the S3 server.
func getFrom(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := os.ReadFile(filepath.Join(fleet.s3.Root, bucket, key)) // versitygw's POSIX backend
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOnProgress: a Download's OnProgress is told the bytes of chunks
// still streaming (each 1 MiB chunk takes 4 s here, and its worker reports
// every 2 s), before any chunk has landed, and last the whole object,
// done, with nothing in flight.
func TestOnProgress(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen []s3fleet.Progress
	tr, err := c.Download(ctx, "s3://bkt/crawl/2m.bin", filepath.Join(t.TempDir(), "2m.bin"),
		s3fleet.OnProgress(func(p s3fleet.Progress) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, p)
		}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Result(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	finer := false
	for _, p := range seen {
		if p.BytesInFlight > 0 && p.BytesDone < 1<<20 && !p.Done {
			finer = true
		}
	}
	last := seen[len(seen)-1]
	if !finer || !last.Done || last.BytesDone != 2<<20 || last.BytesInFlight != 0 || last.Succeeded != 1 {
		t.Fatalf("progress seen: %+v; want bytes in flight before any chunk landed, then 2 MiB done", seen)
	}
}

// TestCancelDownload: a transfer cancelled mid-download ends cancelled:
// Result returns ErrCancelled naming the object, State says cancelled, and
// no file is left at the destination.
func TestCancelDownload(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	dest := filepath.Join(t.TempDir(), "big.bin")
	tr, err := c.Download(ctx, "s3://bkt/slow/big.bin", dest)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, tr, s3fleet.Running)
	if err := tr.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = tr.Result(ctx)
	if !errors.Is(err, s3fleet.ErrCancelled) || !strings.Contains(err.Error(), "s3://bkt/slow/big.bin") {
		t.Fatalf("Result after Cancel: %v", err)
	}
	if st, err := tr.State(ctx); err != nil || st != s3fleet.Cancelled {
		t.Fatalf("state %v %v", st, err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("a cancelled download left its file")
	}
}

func waitState(t *testing.T, tr *s3fleet.Transfer, want s3fleet.State) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := tr.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st == want {
			return
		}
		if time.Now().After(deadline) || st.Final() {
			t.Fatalf("state %v, want %v", st, want)
		}
	}
}

// TestSharedTransfer: a second Download of the same object to the same
// destination follows the first's transfer (one fetch). Cancelling the
// first only takes it out: the transfer goes on and the second's Result
// has the file, while the first's says cancelled.
func TestSharedTransfer(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	dest := filepath.Join(t.TempDir(), "big.bin")
	first, err := c.Download(ctx, "s3://bkt/slow/big.bin", dest)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Download(ctx, "s3://bkt/slow/big.bin", dest)
	if err != nil {
		t.Fatal(err)
	}
	if first.Meta().TransferID != second.Meta().TransferID || first.Meta().JobID == second.Meta().JobID {
		t.Fatalf("metas %+v and %+v: want one transfer, two jobs", first.Meta(), second.Meta())
	}
	if err := first.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Result(ctx); !errors.Is(err, s3fleet.ErrCancelled) {
		t.Fatalf("the cancelled one's Result: %v", err)
	}
	if st, _ := first.State(ctx); st != s3fleet.Cancelled || !first.Done() {
		t.Fatalf("the cancelled one: %v, done %v", st, first.Done())
	}
	rec, err := second.Result(ctx)
	if err != nil || rec.State != s3fleet.Success {
		t.Fatalf("the other one's Result: %+v %v", rec, err)
	}
	if got := get(t, "slow/big.bin"); !bytes.Equal(mustRead(t, dest), got) {
		t.Fatal("the file differs from the object")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMissingKey: a key that does not exist is an error of Download that
// names it.
func TestMissingKey(t *testing.T) {
	c := connect(t)
	_, err := c.Download(context.Background(), "s3://bkt/no/such.key", filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(err.Error(), "s3://bkt/no/such.key") {
		t.Fatalf("Download of a missing key: %v", err)
	}
	// Not one object: refused before anything is enqueued (a review found a
	// prefix enqueued whole, with a Transfer of one of its objects).
	for _, src := range []string{"s3://bkt/logs/", "s3://bkt", "/etc/hostname"} {
		if _, err := c.Download(context.Background(), src, t.TempDir()+"/"); err == nil || !strings.Contains(err.Error(), "not the URL of one object") {
			t.Errorf("Download(%q): %v", src, err)
		}
	}
}

// TestSubmitJob: a prefix job of 21 objects (20 in batches, one chunked):
// Wait returns once all have landed, Progress counts them and their bytes,
// and Objects lists each with its record.
func TestSubmitJob(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	dest := t.TempDir() + "/"
	j, err := c.Submit(ctx, s3fleet.Job{Sources: []string{"s3://bkt/logs/"}, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	p, err := j.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want int64 = 3 << 20
	for i := range 20 {
		want += int64(100 + i)
	}
	if p.Objects != 21 || p.Succeeded != 21 || p.BytesDone != want || p.BytesTotal != want || !p.Done {
		t.Fatalf("progress %+v, want 21 objects of %d bytes", p, want)
	}
	n := 0
	for rec, err := range j.Objects(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != s3fleet.Success || rec.JobID != j.ID() || !strings.HasPrefix(rec.Dest, dest) {
			t.Fatalf("record %+v", rec)
		}
		if got := mustRead(t, rec.Dest); !bytes.Equal(got, get(t, strings.TrimPrefix(rec.Source, "s3://bkt/"))) {
			t.Fatalf("%s differs from %s", rec.Dest, rec.Source)
		}
		n++
	}
	if n != 21 {
		t.Fatalf("Objects listed %d, want 21", n)
	}
}

// TestLocalWithoutRedis: Local runs the fleet in this process with its
// Redis setting pointing nowhere: a download lands, checked.
func TestLocalWithoutRedis(t *testing.T) {
	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	opts.Redis = "redis://127.0.0.1:1/0" // nothing listens there
	// A worker's listeners, inherited from the settings, are not started
	// (a port in use made the embedded worker fail and Result wait forever).
	opts.HealthAddr = fleet.redis.Addr
	ctx := context.Background()
	c, err := s3fleet.Local(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dest := filepath.Join(t.TempDir(), "2026.csv")
	tr, err := c.Download(ctx, "s3://bkt/reports/2026.csv", dest)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tr.Result(ctx)
	if err != nil || rec.State != s3fleet.Success {
		t.Fatalf("%+v %v", rec, err)
	}
	if !bytes.Equal(mustRead(t, dest), get(t, "reports/2026.csv")) {
		t.Fatal("the file differs from the object")
	}
}

// TestConnectUnreachable: Connect fails within the connect timeout when
// Redis is not there, naming it.
func TestConnectUnreachable(t *testing.T) {
	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	opts.Redis = "redis://127.0.0.1:1/0"
	opts.ConnectTimeout = 2 * time.Second
	start := time.Now()
	_, err = s3fleet.Connect(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || time.Since(start) > 5*time.Second {
		t.Fatalf("Connect to nothing: %v after %s", err, time.Since(start))
	}
}

// TestCopyAndUpload: Copy and Upload return Transfers as Download does:
// an object copied to another bucket and a local file uploaded land with
// every byte as the source's, checked; a destination of the wrong kind is
// refused before anything is enqueued.
func TestCopyAndUpload(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	cp, err := c.Copy(ctx, "s3://bkt/logs/big.log", "s3://out/copied/big.log")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := cp.Result(ctx)
	if err != nil || rec.State != s3fleet.Success || rec.Dest != "s3://out/copied/big.log" || rec.Size != 3<<20 || rec.Check == "" {
		t.Fatalf("copy: %+v %v", rec, err)
	}
	if !bytes.Equal(getFrom(t, "out", "copied/big.log"), get(t, "logs/big.log")) {
		t.Fatal("the copy differs from its source")
	}

	src := filepath.Join(t.TempDir(), "up.bin")
	body := make([]byte, 5<<19) // 2.5 MiB: three chunks
	if _, err := rand.Read(body); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, body, 0o644); err != nil {
		t.Fatal(err)
	}
	up, err := c.Upload(ctx, src, "s3://out/up/up.bin")
	if err != nil {
		t.Fatal(err)
	}
	if up.Meta().Source != src || up.Meta().Size != int64(len(body)) {
		t.Fatalf("upload meta %+v", up.Meta())
	}
	rec, err = up.Result(ctx)
	if err != nil || rec.State != s3fleet.Success || rec.Check == "" {
		t.Fatalf("upload: %+v %v", rec, err)
	}
	if !bytes.Equal(getFrom(t, "out", "up/up.bin"), body) {
		t.Fatal("the uploaded object differs from the file")
	}

	// Small files too (a review found them waiting in a batch with no
	// record to follow: Upload failed, and the object landed anyway).
	for _, size := range []int{100 << 10, 0} {
		small := filepath.Join(t.TempDir(), fmt.Sprintf("small-%d.bin", size))
		if err := os.WriteFile(small, body[:size], 0o644); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("up/small-%d.bin", size)
		up, err := c.Upload(ctx, small, "s3://out/"+key)
		if err != nil {
			t.Fatalf("upload of %d bytes: %v", size, err)
		}
		if rec, err := up.Result(ctx); err != nil || rec.State != s3fleet.Success {
			t.Fatalf("upload of %d bytes: %+v %v", size, rec, err)
		}
		if !bytes.Equal(getFrom(t, "out", key), body[:size]) {
			t.Fatalf("the uploaded %d bytes differ from the file", size)
		}
	}
	link := filepath.Join(t.TempDir(), "link.bin")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}

	for name, call := range map[string]func() error{
		"a symbolic link is not followed": func() error {
			_, err := c.Upload(ctx, link, "s3://out/x")
			return err
		},
		"Copy writes to S3": func() error {
			_, err := c.Download(ctx, "s3://bkt/logs/big.log", "s3://out/x")
			return err
		},
		"not an object URL": func() error {
			_, err := c.Copy(ctx, "s3://bkt/logs/big.log", filepath.Join(t.TempDir(), "x"))
			return err
		},
		"not a regular file": func() error {
			_, err := c.Upload(ctx, t.TempDir(), "s3://out/x")
			return err
		},
		"not a local file": func() error {
			_, err := c.Upload(ctx, "s3://bkt/logs/big.log", "s3://out/x")
			return err
		},
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("want an error saying %q, got %v", name, err)
		}
	}
}

// TestLocalWorkerStopped: when a Local client's workers stop on their own
// (here, an SSE-C key file that is not there), Result and Wait name the
// cause, and a later Download is refused with it rather than left to wait
// for ever.
func TestLocalWorkerStopped(t *testing.T) {
	opts, err := s3fleet.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	opts.SSECKeyFile = filepath.Join(t.TempDir(), "missing.key")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s3fleet.Local(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const cause = "the local worker stopped"
	tr, err := c.Download(ctx, "s3://bkt/logs/00.log", filepath.Join(t.TempDir(), "x"))
	if err != nil {
		if !strings.Contains(err.Error(), cause) {
			t.Fatalf("Download: %v", err)
		}
		return // the worker had stopped already: refused with the cause
	}
	if _, err := tr.Result(ctx); err == nil || !strings.Contains(err.Error(), cause) || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("Result: %v; want the worker's cause", err)
	}
	if _, err := c.Download(ctx, "s3://bkt/logs/01.log", filepath.Join(t.TempDir(), "y")); err == nil || !strings.Contains(err.Error(), cause) {
		t.Fatalf("Download after the workers stopped: %v", err)
	}
}
