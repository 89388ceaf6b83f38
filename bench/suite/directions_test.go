package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseCellsDirections reads download cells as before and the other
// directions' cells without a mode, and rejects what a direction lacks.
func TestParseCellsDirections(t *testing.T) {
	cells, err := parseCells("server-copy/*/loopback:2, big/loopback/scratch, upload/big/*, download/small/loopback/durable:4")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cells {
		got = append(got, c.id()+":"+string(rune('0'+c.runs)))
	}
	want := []string{"big/loopback/scratch:0", "small/loopback/durable:4", "upload/big/loopback:0", "upload/big/tls:0",
		"server-copy/big/loopback:2", "server-copy/small/loopback:2"}
	if !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	for _, bad := range []string{"upload/big/loopback/durable", "upload/small/loopback", "copy/big/wan", "big/tls/durable", "server-copy/big"} {
		if _, err := parseCells(bad); err == nil {
			t.Errorf("parseCells(%q): no error", bad)
		}
	}
	full, err := parseCells(fullCells)
	if err != nil {
		t.Fatal(err)
	}
	kept, dirs, err := keepDirections(full, "copy, upload")
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, c := range kept {
		got = append(got, c.id())
	}
	if want := []string{"upload/big/loopback", "upload/big/tls", "copy/big/loopback", "copy/big/tls"}; !slices.Equal(got, want) || len(dirs) != 2 {
		t.Fatalf("kept %q (%q), want %q", got, dirs, want)
	}
	if _, _, err := keepDirections(full, "sideways"); err == nil {
		t.Error("keepDirections: an unknown direction passed")
	}
	if _, _, err := keepDirections(kept, "download"); err == nil {
		t.Error("keepDirections: no cell left, no error")
	}
}

// TestDirectionCommands checks what s3fleet and the peers are told in each
// direction: the same source and a fresh destination prefix.
func TestDirectionCommands(t *testing.T) {
	o := options{s5cmd: "s5cmd", rclone: "rclone", fleetWorkers: []int{2}, rcloneStreams: 8, binDir: "/b"}
	big := &workload{id: "big", key: "big.bin", objects: []object{{key: "big.bin", size: 10}}, total: 10, local: "/src/big"}
	small := &workload{id: "small", prefix: "small/", objects: []object{{key: "small/000001.bin", size: 1}}, total: 1}
	env := func(dir string, w *workload) runEnv {
		return runEnv{dir: dir, endpoint: "http://a", dstEndpoint: "http://b", dstAccess: "ak", dstSecret: "sk", w: w, out: "run-1/"}
	}
	for _, tc := range []struct {
		dir      string
		w        *workload
		src, dst string
	}{
		{dirUpload, big, "/src/big/big.bin", "s3://dst/run-1/big.bin"},
		{dirCopy, big, "s3://bench/big.bin", "gw2://dst/run-1/big.bin"},
		{dirServerCopy, big, "s3://bench/big.bin", "s3://dst/run-1/big.bin"},
		{dirServerCopy, small, "s3://bench/small/", "s3://dst/run-1/"},
	} {
		if src, dst := fleetArgs(env(tc.dir, tc.w)); src != tc.src || dst != tc.dst {
			t.Errorf("%s %s: enqueue %s %s, want %s %s", tc.dir, tc.w.id, src, dst, tc.src, tc.dst)
		}
	}
	byName := map[string]*contender{}
	for _, c := range contenders(o) {
		byName[c.name] = c
	}
	line := func(name, dir string, w *workload) string {
		c := byName[name]
		if !c.does(dir) {
			t.Fatalf("%s does not go %s", name, dir)
		}
		bin, args, _ := c.ways[dir].cmd(env(dir, w))
		return strings.Join(append([]string{bin}, args...), " ")
	}
	for _, tc := range []struct{ name, dir, want string }{
		{"s5cmd", dirUpload, "s5cmd --endpoint-url http://a cp /src/big/big.bin s3://dst/run-1/big.bin"},
		{"s5cmd", dirServerCopy, "s5cmd --endpoint-url http://a cp s3://bench/big.bin s3://dst/run-1/big.bin"},
		{"sdk manager tuned", dirUpload, "/b/sdkupload -endpoint http://a -bucket dst -key run-1/big.bin -file /src/big/big.bin -tuned"},
		{"rclone", dirCopy, "rclone copyto src:bench/big.bin dst:dst/run-1/big.bin --multi-thread-streams 8"},
		{"ceiling", dirUpload, "/b/plainput -endpoint http://a -bucket dst -key run-1/big.bin -size 10"},
		{"ceiling", dirCopy, "/b/plainput -endpoint http://b -bucket dst -key run-1/big.bin -size 10"},
		{"ceiling", dirServerCopy, "/b/plainput -endpoint http://a -bucket dst -key run-1/big.bin -copy-from bench/big.bin"},
		{"ceiling GET", dirCopy, "/b/plainget -endpoint http://a -bucket bench -key big.bin -out run-1/big.bin -discard"},
	} {
		if got := line(tc.name, tc.dir, big); got != tc.want {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.name, tc.dir, got, tc.want)
		}
	}
	if got, want := line("s5cmd", dirServerCopy, small), "s5cmd --endpoint-url http://a cp s3://bench/small/* s3://dst/run-1/"; got != want {
		t.Errorf("s5cmd server-copy of a prefix:\n got %s\nwant %s", got, want)
	}
	// The second server's credentials reach the copy's tools, not the first's.
	_, _, rcloneEnv := byName["rclone"].ways[dirCopy].cmd(env(dirCopy, big))
	if !slices.Contains(rcloneEnv, "RCLONE_CONFIG_DST_ACCESS_KEY_ID=ak") || !slices.Contains(rcloneEnv, "RCLONE_CONFIG_DST_ENDPOINT=http://b") {
		t.Errorf("rclone's destination remote: %q", rcloneEnv)
	}
	_, _, putEnv := byName["ceiling"].ways[dirCopy].cmd(env(dirCopy, big))
	if !slices.Equal(putEnv, []string{"AWS_ACCESS_KEY_ID=ak", "AWS_SECRET_ACCESS_KEY=sk"}) {
		t.Errorf("the PUT ceiling on the second server: %q", putEnv)
	}
	for _, name := range []string{"boto3", "s3transfer pp", "plain loop", "s5cmd -c8 -p8"} {
		if byName[name].does(dirServerCopy) || byName[name].does(dirCopy) {
			t.Errorf("%s copies", name)
		}
	}
	if got, err := selectContenders(contenders(o), ".", []string{dirCopy}); err != nil || len(got) != 5 {
		t.Errorf("contenders of a copy: %d, %v; want s3fleet 2w, rclone, rclone tuned, ceiling, ceiling GET", len(got), err)
	}
}

// TestFleetConfig is the file the workers and the enqueue read for uploads
// and copies.
func TestFleetConfig(t *testing.T) {
	got := fleetConfig("https://127.0.0.1:9", "/tmp/s/src")
	want := `remotes:
  gw2:
    endpoint: https://127.0.0.1:9
    region: us-east-1
    path_style: true
    profile: gw2
allow_write: ["s3://dst/", "gw2://dst/"]
allow_source: ["/tmp/s/src"]
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := fleetConfig("", "/s"); strings.Contains(got, "gw2") {
		t.Fatalf("no second server, yet:\n%s", got)
	}
}

// TestTargetsDirections puts the directions' goals in the targets table:
// each ratio against the peer the issue names, and the worker's memory.
func TestTargetsDirections(t *testing.T) {
	o := options{ref: "s3fleet 2w", fleetWorkers: []int{2}}
	all := contenders(o)
	big := &workload{id: "big", key: "big.bin", objects: []object{{key: "big.bin", size: 1 << 30}}, total: 1 << 30}
	s := &suite{opt: o, contenders: all,
		cells: []cell{{dir: dirUpload, w: big, net: netLoopback}, {dir: dirCopy, w: big, net: netLoopback}, {dir: dirUpload, w: big, net: netTLS}}}
	add := func(cl cell, name string, secs float64, rss int64, err error) {
		s.samples = append(s.samples, sample{cell: cl.id(), contender: name, elapsed: time.Duration(secs * float64(time.Second)), rssWorker: rss, err: err})
	}
	up, cp, upTLS := s.cells[0], s.cells[1], s.cells[2]
	add(up, "s3fleet 2w", 1, 40<<20, nil)
	add(up, "s5cmd", 1.4, 0, nil)
	add(up, "sdk manager", 3, 0, nil)
	add(cp, "s3fleet 2w", 2, 70<<20, nil)
	add(cp, "rclone", 2.5, 0, nil)
	add(cp, "rclone", 1, 0, errors.New("failed runs do not count"))
	add(cp, "ceiling", 1, 0, nil)
	add(cp, "ceiling GET", 0.5, 0, nil)
	add(upTLS, "s3fleet 2w", 1, 30<<20, nil)
	add(upTLS, "s5cmd", 3, 0, nil) // no target over HTTPS

	var rows [][]string
	for line := range strings.Lines(s.targets()) {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	rows = rows[2:] // the header and its rule
	want := [][]string{
		{"upload/big/loopback", "s3fleet 2w 1074 MB/s", "s5cmd 767", "1.40×", "≥ 1.5×", "no"},
		{"upload/big/loopback", "s3fleet 2w 1074 MB/s", "sdk manager 358", "3.00×", "≥ 2.0×", "yes"},
		{"copy/big/loopback", "s3fleet 2w 537 MB/s", "rclone 429", "1.25×", "≥ 1.5×", "no"},
		{"upload/big/loopback", "s3fleet 2w worker peak RSS 40 MiB", "–", "–", "< 64 MiB", "yes"},
		{"copy/big/loopback", "s3fleet 2w worker peak RSS 70 MiB", "–", "–", "< 64 MiB", "no"},
		{"upload/big/tls", "s3fleet 2w worker peak RSS 30 MiB", "–", "–", "< 64 MiB", "yes"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), s.targets())
	}
	for i := range want {
		if !slices.Equal(rows[i], want[i]) {
			t.Errorf("row %d: %q, want %q", i, rows[i], want[i])
		}
	}
	tab := s.table(cp)
	ref, ok := refFleet(tab, o.ref)
	line := copyCeiling(tab, ref, ok)
	if !strings.Contains(line, "(ceiling GET, 2147 MB/s)") || !strings.Contains(line, "(ceiling, 1074 MB/s): 1074 MB/s") || !strings.Contains(line, "reached 50 %") {
		t.Errorf("copy ceiling: %s", line)
	}
	if line := copyCeiling(s.table(up), ref, ok); line != "" {
		t.Errorf("an upload has no copy ceiling: %s", line)
	}
}

// TestShownFlags quotes the command without what run.sh adds.
func TestShownFlags(t *testing.T) {
	got := shownFlags([]string{"-mode", "full", "-s5cmd", "/x/s5cmd", "-directions", "upload,copy", "-keep", "-versions=s5cmd=v2",
		"-runs", "3", "--cells=upload/big/*"})
	if want := []string{"-directions", "upload,copy", "-keep", "-runs", "3", "--cells=upload/big/*"}; !slices.Equal(got, want) {
		t.Fatalf("%q, want %q", got, want)
	}
}
