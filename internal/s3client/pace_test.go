package s3client_test

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/internal/testenv"
)

// pacer records what the client asked of it.
type pacer struct {
	mu        sync.Mutex
	waits     map[string]int
	throttled map[string]int
	ok        map[string]int
}

func (p *pacer) Wait(_ context.Context, scope string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waits[scope]++
	return nil
}

func (p *pacer) Done(scope string, throttled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if throttled {
		p.throttled[scope]++
	} else {
		p.ok[scope]++
	}
}

// TestPacer: every attempt of every request goes through the Pacer, scoped
// by endpoint, bucket and the key's first segment, with each 503 SlowDown
// reported as throttled; and 150 requests throttled at once all succeed on
// their retry: the SDK's retry quota (500 tokens, 5 a retry) would have
// failed 50 of them, a throttle of its own that the fleet could not see.
func TestPacer(t *testing.T) {
	srv := testenv.StartS3(t)
	srv.CreateBucket(t, "bkt")
	srv.Put(t, "bkt", "logs/a", bytes.NewReader([]byte("hello")), false)
	srv.Put(t, "bkt", "top", bytes.NewReader([]byte("world")), false)
	proxy := testenv.StartFaultProxy(t, srv.Endpoint)
	var mu sync.Mutex
	seen := map[string]bool{} // each request's first attempt is throttled
	proxy.SetRule(func(r *http.Request) testenv.Fault {
		id := r.Header.Get("Amz-Sdk-Invocation-Id")
		mu.Lock()
		defer mu.Unlock()
		if !seen[id] {
			seen[id] = true
			return testenv.Fault{Action: testenv.Status, Status: 503, Code: "SlowDown"}
		}
		return testenv.Fault{}
	})
	p := &pacer{waits: map[string]int{}, throttled: map[string]int{}, ok: map[string]int{}}
	o := srv.Options(proxy.URL)
	o.Pacer = p
	c, err := s3client.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	const n = 150
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		key := "logs/a"
		if i%3 == 0 {
			key = "top"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key)})
			if err != nil {
				errs <- err
				return
			}
			out.Body.Close()
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed == 1 {
			t.Errorf("a GET throttled once failed: %v", err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d GETs failed", failed, n)
	}
	fp := o.Fingerprint()
	logs, top := fp+"/bkt/logs/", fp+"/bkt/"
	want := map[string]int{logs: 100, top: 50}
	for sc, k := range want {
		if p.waits[sc] != 2*k || p.throttled[sc] != k || p.ok[sc] != k {
			t.Errorf("scope %s: %d waits, %d throttled, %d ok; want %d, %d, %d", sc, p.waits[sc], p.throttled[sc], p.ok[sc], 2*k, k, k)
		}
	}
	if len(p.waits) != len(want) {
		t.Errorf("scopes %v, want %s and %s", p.waits, logs, top)
	}
}
