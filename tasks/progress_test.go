package tasks

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/location"
)

// partServer answers UploadPart: it reads the whole body, and fails the
// first failFirst requests with 500 (the SDK retries over plain HTTP).
type partServer struct {
	failFirst int32
	requests  atomic.Int32
	mu        sync.Mutex
	bodies    []int // bytes of each request's body it read
}

func (s *partServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	nth := s.requests.Add(1)
	n, _ := io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.bodies = append(s.bodies, int(n))
	s.mu.Unlock()
	if nth <= s.failFirst {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `<Error><Code>InternalError</Code></Error>`)
		return
	}
	w.Header().Set("ETag", `"part"`)
}

// eachRead is a watcher that looks on every read (not every watchEvery),
// records each figure and returns what fail says.
func eachRead(fail func(call int, sent int64) error) (*watcher, *[]int64) {
	var figs []int64
	w := &watcher{}
	w.check = func(sent int64) error {
		figs = append(figs, sent)
		w.next = time.Time{}
		return fail(len(figs), sent)
	}
	return w, &figs
}

func never(int, int64) error { return nil }

// onlyReader hides every method of a reader but Read (a GET's body).
type onlyReader struct{ io.Reader }

// TestPutPartProgress: the figure a chunk writing to S3 reports is what
// the SDK has sent of its part, never more than the range, and reaches
// the range only at the end of the send: over plain HTTP from a local
// file (its CRC pass reports nothing sent) and from a spool (the GET that
// fills it reports nothing sent), with an SDK retry rewinding the figure;
// over TLS as the body streams.
func TestPutPartProgress(t *testing.T) {
	t.Parallel()
	const size = 1<<20 + 12345
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := ChunkPayload{Chunk: 0, First: 0, Last: size - 1}
	dst := location.Source{Bucket: "b", Key: "k"}
	for _, c := range []struct {
		name          string
		tls, local    bool
		failFirst     int32
		wantPrePasses bool // a pass that sends nothing comes first
	}{
		{name: "http-local", local: true, wantPrePasses: true},
		{name: "http-local-retried", local: true, failFirst: 1, wantPrePasses: true},
		{name: "http-spool-retried", failFirst: 1, wantPrePasses: true},
		{name: "tls-local", tls: true, local: true},
		{name: "tls-stream", tls: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := &partServer{failFirst: c.failFirst}
			ts := httptest.NewUnstartedServer(srv)
			if c.tls {
				ts.StartTLS()
			} else {
				ts.Start()
			}
			defer ts.Close()
			api := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(ts.URL), UsePathStyle: true, HTTPClient: ts.Client(),
				Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
			h := &ChunkHandler{S3: oneEndpoint{api, c.tls}}
			var body io.Reader = onlyReader{bytes.NewReader(data)}
			if c.local {
				body = io.NewSectionReader(f, 0, size)
			}
			w, figs := eachRead(never)
			n, _, etag, err := h.putPart(context.Background(), api, p, dst, "up", body, w, "test")
			if err != nil || n != size || etag != `"part"` {
				t.Fatalf("putPart: %d bytes, ETag %q, %v", n, etag, err)
			}
			// The figures: zeros while nothing is sent, then each attempt's
			// climb from 0 towards the range's length. The transport closes a
			// body once S3 has answered, so an attempt's last figure may be
			// that before its last read (the figure is taken before a read).
			var attempts []int64 // each attempt's highest figure
			prev := int64(0)
			for i, x := range *figs {
				switch {
				case x < 0 || x > size:
					t.Fatalf("figure %d is %d, outside 0..%d", i, x, size)
				case x < prev && x != 0:
					t.Fatalf("figure %d went from %d back to %d, not to the start", i, prev, x)
				case x < prev || (x > 0 && len(attempts) == 0):
					attempts = append(attempts, x)
				case x > 0:
					attempts[len(attempts)-1] = x
				}
				prev = x
			}
			if len(attempts) != int(c.failFirst)+1 || attempts[len(attempts)-1] < size-64<<10 {
				t.Fatalf("%d figures, highest of each attempt %v; want %d attempts, the last reaching about %d", len(*figs), attempts, c.failFirst+1, size)
			}
			if c.wantPrePasses {
				// A whole pass of reads before the send reports nothing sent.
				zeros := 0
				for _, x := range *figs {
					if x != 0 {
						break
					}
					zeros++
				}
				if zeros < 2 {
					t.Errorf("%d leading zero figures, want the first pass's reads to report nothing sent", zeros)
				}
			}
		})
	}
}

// TestPutPartLandedElsewhere: a chunk writing to S3 whose copy landed
// (ChunkProgress says so) stops mid-send with errLandedElsewhere, which
// ProcessTask takes for success, over plain HTTP (where the SDK would
// retry a body that failed to read: it does not, and no attempt sends the
// part whole) and over TLS.
func TestPutPartLandedElsewhere(t *testing.T) {
	t.Parallel()
	const size = 1<<20 + 1
	data := make([]byte, size)
	p := ChunkPayload{Chunk: 0, First: 0, Last: size - 1}
	dst := location.Source{Bucket: "b", Key: "k"}
	for _, tls := range []bool{false, true} {
		srv := &partServer{}
		ts := httptest.NewUnstartedServer(srv)
		if tls {
			ts.StartTLS()
		} else {
			ts.Start()
		}
		api := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(ts.URL), UsePathStyle: true, HTTPClient: ts.Client(),
			Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
		h := &ChunkHandler{S3: oneEndpoint{api, tls}}
		w, _ := eachRead(func(_ int, sent int64) error {
			if sent > 0 {
				return errLandedElsewhere
			}
			return nil
		})
		_, _, _, err := h.putPart(context.Background(), api, p, dst, "up", onlyReader{bytes.NewReader(data)}, w, "test")
		ts.Close()
		if !errors.Is(err, errLandedElsewhere) {
			t.Fatalf("tls %v: %v, want errLandedElsewhere", tls, err)
		}
		if n := srv.requests.Load(); n > 1 {
			t.Errorf("tls %v: %d attempts, want 1 at most (the SDK does not retry a stopped part)", tls, n)
		}
		srv.mu.Lock()
		for _, b := range srv.bodies {
			if b >= size {
				t.Errorf("tls %v: an attempt sent the whole part (%d bytes) after the stop", tls, b)
			}
		}
		srv.mu.Unlock()
	}
}
