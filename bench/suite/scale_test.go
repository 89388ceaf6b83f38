package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIsScaleMode(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-mode", "scale", "-hosts", "1,2"}, true},
		{[]string{"-mode=scale"}, true},
		{[]string{"--mode", "scale"}, true},
		{[]string{"-mode", "full", "-cells", "scale"}, false},
		{[]string{"-hosts", "1"}, false},
		{nil, false},
	} {
		if got := isScaleMode(tc.args); got != tc.want {
			t.Errorf("isScaleMode(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestEfficiency(t *testing.T) {
	w := &workload{id: "big", total: 1 << 30}
	run := func(n int, secs ...float64) scaleRow {
		r := scaleRow{hosts: n, w: w}
		for _, s := range secs {
			r.ok = append(r.ok, scaleSample{elapsed: time.Duration(s * float64(time.Second))})
		}
		return r
	}
	got := efficiency([]scaleRow{run(1, 60, 62), run(2, 31), run(8, 8.5, 9.5, 9), {hosts: 4, w: w}})
	want := []float64{1, 61.0 / 62, 61.0 / 72, 0}
	for i := range want {
		if diff := got[i] - want[i]; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("efficiency[%d] = %.4f, want %.4f", i, got[i], want[i])
		}
	}
}

// TestScaleSection carries the scale report's summary into results.md:
// in place of the old section, else before the contenders' commands,
// else at the end.
func TestScaleSection(t *testing.T) {
	root := t.TempDir()
	bench := filepath.Join(root, "bench")
	if err := os.MkdirAll(bench, 0o755); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(bench, "results.md")
	if got := scaleSection(root, results); got != "" {
		t.Fatalf("no scale report: section %q, want none", got)
	}
	report := "# s3fleet scale-out\n\n`bench/suite/run.sh scale` on 2026-12-02.\n\n- Machine: …\n\n" +
		summaryStart + "\n| hosts | big MB/s |\n| 8 | 140 |\n" + summaryEnd + "\n\nmore\n"
	if err := os.WriteFile(filepath.Join(root, defaultScaleOut), []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	sec := scaleSection(root, results)
	for _, want := range []string{sectionStart, "## Scale-out", "| 8 | 140 |", "[results-scale.md](results-scale.md)",
		"[results-scale.png](results-scale.png)", "From `bench/suite/run.sh scale` on 2026-12-02.", sectionEnd} {
		if !strings.Contains(sec, want) {
			t.Errorf("section lacks %q:\n%s", want, sec)
		}
	}
	if strings.Contains(sec, "more") {
		t.Errorf("section holds more than the summary:\n%s", sec)
	}
	if got := scaleSection(root, filepath.Join(bench, "out", "results-quick.md")); !strings.Contains(got, "(../results-scale.md)") {
		t.Errorf("from bench/out the link should go up a directory:\n%s", got)
	}

	for _, tc := range []struct{ name, before, want string }{
		{"appended", "# results\n\n## failover\n", "# results\n\n## failover\n\n" + sec},
		{"before the commands", "# results\n\n## The contenders' commands\n\nx\n", "# results\n\n" + sec + "\n## The contenders' commands\n\nx\n"},
		{"replaced", "# results\n\n" + sectionStart + "\nold\n" + sectionEnd + "\n\n## The contenders' commands\n",
			"# results\n\n" + sec + "\n## The contenders' commands\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(results, []byte(tc.before), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := updateScaleSection(results, sec); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(results)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b, tc.want)
			}
		})
	}
}

func TestTBFArgs(t *testing.T) {
	got := strings.Join(tbfArgs(150), " ")
	if want := "tbf rate 150mbit burst 187500 latency 25ms"; got != want {
		t.Errorf("tbfArgs(150) = %q, want %q", got, want)
	}
	if got := tbfArgs(10)[4]; got != "65536" {
		t.Errorf("burst at 10 Mbit/s = %s, want the 64 KiB floor", got)
	}
}

// TestPerChunk keeps the calls made once a chunk at every number of
// hosts, and leaves out those that follow the clock (an idle worker makes
// them too) or the hosts.
func TestPerChunk(t *testing.T) {
	w := &workload{id: "big", total: 1 << 30}
	done, beat, poll := callKey{"ledger", "chunkDoneScript"}, callKey{"liveness", "beatScript"}, callKey{"", "hgetall"}
	row := func(n int, counts map[callKey]int64) scaleRow {
		c := newCallCounts()
		for k, v := range counts {
			c.top[byWorkers][k] = v
		}
		return scaleRow{hosts: n, w: w, ok: []scaleSample{{cost: redisCost{calls: c}}}}
	}
	rows := []scaleRow{
		row(1, map[callKey]int64{done: 128, beat: 120, poll: 1200}),
		row(8, map[callKey]int64{done: 129, beat: 136, poll: 160}),
	}
	idle := &idleSample{hosts: 1, elapsed: time.Second, cost: redisCost{calls: newCallCounts()}}
	idle.cost.calls.top[byWorkers][beat] = 2
	got := perChunk(rows, 128, idle)
	if want := []string{"ledger chunkDoneScript (1.01)"}; strings.Join(got, ";") != strings.Join(want, ";") {
		t.Errorf("perChunk = %q, want %q", got, want)
	}
}

func TestDataSpan(t *testing.T) {
	lo, hi := dataSpan([]time.Duration{-1, 3 * time.Second, time.Second, 0, 2 * time.Second})
	if lo != time.Second || hi != 3*time.Second {
		t.Errorf("dataSpan = %s, %s; want 1s, 3s", lo, hi)
	}
}

// TestScaleReport renders the report and the chart of made-up runs: every
// table and the waste found in them.
func TestScaleReport(t *testing.T) {
	root := t.TempDir()
	o := scaleOptions{hosts: []int{1, 2}, rateMbit: 150, concurrency: 2, chunk: 8 << 20, bigSize: 1 << 30, smallSize: 256 << 10,
		smallCount: 4, runs: 1, idle: 10 * time.Second, settle: time.Second, out: "bench/out/scale.md", chart: "bench/out/scale.png", root: root}
	s := &scaleSuite{opt: o, started: time.Now(), destNote: "a tmpfs", redisVersion: "7.0.15",
		scripts: scriptCatalogue{"x": {name: "dequeueCmd", origin: "asynq"}}}
	s.big = &workload{id: "big", key: "big.bin", title: "one 1 GiB object", objects: []object{{key: "big.bin", size: 1 << 30}}, total: 1 << 30}
	s.small = &workload{id: "small", prefix: "small/", title: "4 objects of 256 KiB", total: 4 << 18,
		objects: []object{{key: "small/0"}, {key: "small/1"}, {key: "small/2"}, {key: "small/3"}}}
	deq, done, poll := callKey{"asynq", "dequeueCmd"}, callKey{"ledger", "chunkDoneScript"}, callKey{"", "hgetall"}
	sample := func(n int, w string, secs float64, counts map[callKey]int64) scaleSample {
		c := newCallCounts()
		for k, v := range counts {
			c.top[byWorkers][k] = v
		}
		c.top[byEnqueue][poll] = int64(20 * secs)
		c.inside[deq] = 2 * counts[deq]
		el := time.Duration(secs * float64(time.Second))
		link := make([]int64, n)
		first, last := make([]time.Duration, n), make([]time.Duration, n)
		for i := range link {
			link[i] = (1 << 30) / int64(n)
			first[i], last[i] = 400*time.Millisecond, el-50*time.Millisecond
		}
		return scaleSample{hosts: n, workload: w, run: 1, elapsed: el, cpuWorkers: el / 10, busy: el / 5, link: link,
			firstData: first, lastData: last, cost: redisCost{stats: redisStats{calls: map[string]int64{"evalsha": 500}, reads: 400}, calls: c}}
	}
	s.samples = []scaleSample{
		sample(1, "big", 60, map[callKey]int64{deq: 450, done: 128}), sample(1, "small", 30, map[callKey]int64{deq: 10}),
		sample(2, "big", 31, map[callKey]int64{deq: 500, done: 128}), {hosts: 2, workload: "small", run: 1, err: errWorkerDied},
	}
	mem := callKey{"asynq", "memoryUsageCmd"}
	s.samples[2].cost.calls.top[byWorkers][mem] = 5
	s.samples[2].cost.calls.inside[mem] = 200
	idle := newCallCounts()
	idle.top[byWorkers][deq] = 960
	idle.inside[deq] = 1920
	s.idles = []idleSample{{hosts: 2, elapsed: 10 * time.Second, cpuRedis: 100 * time.Millisecond, cost: redisCost{calls: idle}}}
	md := s.render()
	for _, want := range []string{summaryStart, "| 2     |     34.6 |           0.97 |", "ledger chunkDoneScript (1.00)",
		"An idle worker sends 48 calls/s, 48 of them asynq's dequeue script", "2 hosts, small, run 1: a worker exited during the run",
		"EVALSHA asynq dequeueCmd", "| 2 hosts |", "40 commands inside Redis a queue", "5 times in the 3 runs"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if err := s.drawScaleChart(filepath.Join(root, "scale.png")); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.Log(md)
	}
}
