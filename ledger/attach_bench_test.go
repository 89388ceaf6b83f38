package ledger_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/ledger"
)

// BenchmarkAttachMany records listing pages of 1,000 new small objects,
// as the enqueue of a large prefix does, and reports what each object
// costs Redis: its CPU time (µs/object) and memory (B/object).
func BenchmarkAttachMany(b *testing.B) {
	r := testenv.StartRedis(b)
	rdb := r.Client(b)
	l := ledger.New(rdb, time.Hour)
	ctx := context.Background()
	if err := l.CreateJob(ctx, "bench", "s3://b/", "/d/", time.Now()); err != nil {
		b.Fatal(err)
	}
	page := make([]ledger.AttachRequest, 1000)
	cpu0, mem0 := redisCPU(b, rdb), usedMemory(b, rdb)
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		for j := range page {
			x := transfer(fmt.Sprintf("p/%09d", n), 16<<10, 1)
			x.Verify, x.Queue, x.LastModified = "auto", "chunks", time.Now().UnixMilli()
			page[j] = ledger.AttachRequest{Job: "bench", Mode: ledger.ModeCreate, New: x}
			n++
		}
		res, err := l.AttachMany(ctx, page, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil || r.State != ledger.Queued {
				b.Fatalf("%s %v", r.State, r.Err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(redisCPU(b, rdb)-cpu0)/float64(n), "redis-µs/object")
	b.ReportMetric(float64(usedMemory(b, rdb)-mem0)/float64(n), "redis-B/object")
}

// redisCPU is the server's CPU time so far, in µs.
func redisCPU(b *testing.B, rdb redis.UniversalClient) int64 {
	info := rdb.InfoMap(context.Background(), "cpu")
	var us int64
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, err := strconv.ParseFloat(info.Item("CPU", f), 64)
		if err != nil {
			b.Fatalf("INFO cpu %s: %v", f, err)
		}
		us += int64(v * 1e6)
	}
	return us
}

func usedMemory(b *testing.B, rdb redis.UniversalClient) int64 {
	v := strings.TrimSpace(rdb.InfoMap(context.Background(), "memory").Item("Memory", "used_memory"))
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		b.Fatalf("INFO memory used_memory %q: %v", v, err)
	}
	return n
}
