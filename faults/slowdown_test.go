package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestSlowDownFleetWide: the store answers 503 SlowDown to every request
// above capRate a second, counted across the whole fleet (four workers, 16
// tasks each, which unpaced ask for several times that). The workers share
// one rate through Redis: after the warm-up, no second sees more than
// 1.1× the cap (refused requests counted too), no object fails, and every
// byte is right. The rate over time is logged.
func TestSlowDownFleetWide(t *testing.T) {
	tier(t)
	const (
		capRate = 60
		warmUp  = 8 * time.Second
		small   = 1200
	)
	f := newFleet(t, withEnv("S3FLEET_CHUNK_SIZE=1MiB", "S3FLEET_THRESHOLD=1MiB"))
	f.createBucket(t, "bkt")
	want := putMany(t, f.s3c, "bkt", small, func(i int) string { return fmt.Sprintf("logs/obj-%05d", i) },
		func(i int) int64 { return int64(512 + (i*7919)%(8*kib)) })
	want["logs/big.bin"] = putLarge(t, f.s3c, "bkt", "logs/big.bin", 48*mib)
	for i := range 4 {
		f.startWorker(t, fmt.Sprintf("worker-%d", i+1), "S3FLEET_CONCURRENCY=16", "S3FLEET_LOG_LEVEL=info")
	}
	time.Sleep(time.Second) // the workers have joined: the first rate splits by them
	limit := testenv.NewRateCap(capRate)
	f.proxy.SetRule(limit.Rule())
	defer f.proxy.SetRule(nil)

	dest := t.TempDir()
	began := time.Now()
	stop := make(chan struct{})
	rates := make(chan string, 1)
	go func() { rates <- paceSeries(f, began, stop) }()
	code, out := f.enqueue(t, "s3://bkt/logs/", dest+"/", "--wait", "--job", "slow")
	took := time.Since(began)
	close(stop)
	t.Logf("the fleet's rate (the scope's in Redis, each second's last; * a cut in it): %s", <-rates)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, tail(out, 3000))
	}
	if n := verify(t, dest, "logs/", want); n != len(want) {
		t.Fatalf("%d of %d objects right", n, len(want))
	}
	if j := f.job(t, "slow"); j.Failed != 0 || j.Succeeded != int64(len(want)) {
		t.Fatalf("job %+v", j)
	}

	series := limit.Series()
	if len(series) < 3 {
		t.Fatalf("the proxy saw %d seconds of requests", len(series))
	}
	first, last := series[0].Unix, series[len(series)-1].Unix
	var line strings.Builder
	worst, worstAt, refused, refusedLate := 0, int64(0), 0, 0
	for _, s := range series {
		fmt.Fprintf(&line, " %d", s.Requests)
		refused += s.Refused
		after := time.Duration(s.Unix-first) * time.Second
		if after < warmUp || s.Unix == last { // the last second is cut short
			continue
		}
		refusedLate += s.Refused
		if s.Requests > worst {
			worst, worstAt = s.Requests, s.Unix-first
		}
	}
	t.Logf("%d objects in %v; requests a second (cap %d): %s", len(want), took.Round(100*time.Millisecond), capRate, line.String())
	t.Logf("refused: %d in all, %d after the %v warm-up; busiest second after it: %d requests (%.2f× the cap) at +%ds",
		refused, refusedLate, warmUp, worst, float64(worst)/capRate, worstAt)
	if worst > capRate*11/10 {
		t.Errorf("after the warm-up a second saw %d requests, over 1.1× the cap of %d", worst, capRate)
	}
	if refused == 0 {
		t.Error("the store never throttled: the test did not exercise the pacing")
	}
}

// paceSeries samples the fleet's shared rates in Redis every 100 ms until
// stop, and sums them up a second at a time: each second's last rate, and
// a star where a cut (or the first rate) was made in it.
func paceSeries(f *fleet, began time.Time, stop <-chan struct{}) string {
	ctx := context.Background()
	var line strings.Builder
	sec, rate, lastCut, cut := 0, 0.0, "", false
	flush := func() {
		mark := ""
		if cut {
			mark = "*"
		}
		fmt.Fprintf(&line, " %.0f%s", rate, mark)
		cut = false
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			flush()
			return line.String()
		case <-tick.C:
		}
		for int(time.Since(began)/time.Second) > sec {
			flush()
			sec++
		}
		keys, _ := f.rdb.Keys(ctx, "{s3fleet}:pace:*").Result()
		for _, k := range keys {
			h, err := f.rdb.HMGet(ctx, k, "rate", "cut").Result()
			if err != nil || h[0] == nil {
				continue
			}
			fmt.Sscan(h[0].(string), &rate)
			if c, _ := h[1].(string); c != lastCut {
				lastCut, cut = c, true
			}
		}
	}
}
