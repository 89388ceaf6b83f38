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
	for _, bad := range []string{"upload/big/loopback/durable", "upload/small/loopback", "copy/big/wan", "big/tls", "server-copy/big",
		"upload/big/wan-tls", "copy/big/wan-tls", "server-copy/big/tls", "big/https/durable"} {
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

	rows := tableRows(s.targets())
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

// TestParseCellsTLS reads the downloads over HTTPS, on loopback (tls) and
// through the emulated WAN (wan-tls), and finds them in the presets.
func TestParseCellsTLS(t *testing.T) {
	ids := func(cells []cellSpec) []string {
		var out []string
		for _, c := range cells {
			out = append(out, c.id())
		}
		return out
	}
	cells, err := parseCells("big/tls/*:2, small/tls/durable, mixed/*/durable, download/big/wan-tls/scratch")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"big/tls/durable", "big/tls/scratch", "big/wan-tls/scratch", "small/tls/durable",
		"mixed/loopback/durable", "mixed/wan/durable", "mixed/tls/durable", "mixed/wan-tls/durable"}
	if got := ids(cells); !slices.Equal(got, want) {
		t.Fatalf("cells %q, want %q", got, want)
	}
	if cells[0].runs != 2 || cells[3].runs != 0 {
		t.Errorf("runs %d and %d, want 2 and 0", cells[0].runs, cells[3].runs)
	}
	o := options{cells: cells}
	if !o.needsTLS() || !o.needsWAN() || !o.needsNet(netWANTLS) || !o.needsNet(netWAN) || !o.needsNet(netLoopback) {
		t.Errorf("needs: tls %v, wan %v", o.needsTLS(), o.needsWAN())
	}
	o = options{cells: []cellSpec{{dir: dirDownload, workload: "big", net: netWANTLS, mode: modeDurable}}}
	if !o.needsTLS() || !o.needsWAN() || o.needsNet(netWAN) || o.needsNet(netTLS) {
		t.Errorf("wan-tls alone: tls %v, wan %v, plain wan %v, tls %v", o.needsTLS(), o.needsWAN(), o.needsNet(netWAN), o.needsNet(netTLS))
	}
	o = options{cells: []cellSpec{{dir: dirDownload, workload: "big", net: netWAN, mode: modeDurable}}}
	if o.needsTLS() {
		t.Error("wan alone needs no HTTPS server")
	}

	full, err := parseCells(fullCells)
	if err != nil {
		t.Fatal(err)
	}
	got := ids(full)
	for _, id := range []string{"big/tls/durable", "big/tls/scratch", "big/wan-tls/durable", "small/tls/durable", "mixed/tls/durable",
		"big/loopback/durable", "big/wan/scratch", "upload/big/tls", "copy/big/tls"} {
		if !slices.Contains(got, id) {
			t.Errorf("full preset: no %s in %q", id, got)
		}
	}
	// Downloads first, each workload's tables together.
	if i, j := slices.Index(got, "big/wan-tls/durable"), slices.Index(got, "small/loopback/durable"); i < 0 || i > j {
		t.Errorf("full preset order: %q", got)
	}
	quick, err := parseCells(presets["quick"].cells)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(quick), []string{"big/loopback/durable", "big/loopback/scratch", "big/tls/durable"}; !slices.Equal(got, want) {
		t.Errorf("quick preset %q, want %q", got, want)
	}
	// -directions keeps the HTTPS downloads with the others.
	kept, _, err := keepDirections(full, "download")
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(kept); !slices.Contains(got, "small/tls/durable") || slices.Contains(got, "upload/big/tls") {
		t.Errorf("downloads of the full preset: %q", got)
	}
}

// TestTLSEndpoints: over HTTPS every download contender is given the
// HTTPS server (directly, or through the TLS wanproxy), and every process
// the suite's certificate; over plain HTTP none of it.
func TestTLSEndpoints(t *testing.T) {
	// The caller's own settings reach no run.
	t.Setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
	t.Setenv("SSL_CERT_DIR", "/etc/ssl/certs")
	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	srvs := &servers{endpoint: "http://127.0.0.1:1", wanEndpoint: "http://127.0.0.1:2", tlsEndpoint: "https://127.0.0.1:3",
		wanTLSEndpoint: "https://127.0.0.1:4", caFile: "/tmp/tls/cert.pem",
		s3: &process{name: "versitygw"}, proxy: &process{name: "wanproxy"}, s3TLS: &process{name: "versitygw tls"},
		proxyTLS: &process{name: "wanproxy tls"}}
	o := options{s5cmd: "s5cmd", rclone: "rclone", python: "/usr/bin/python3", suiteDir: "/s", fleetWorkers: []int{2}, rcloneStreams: 8, binDir: "/b"}
	s := &suite{opt: o, srv: srvs}
	big := &workload{id: "big", key: "big.bin", objects: []object{{key: "big.bin", size: 10}}, total: 10}
	small := &workload{id: "small", prefix: "small/", objects: []object{{key: "small/000001.bin", size: 1}}, total: 1}
	procNames := func(ps []*process) string {
		var names []string
		for _, p := range ps {
			names = append(names, p.name)
		}
		return strings.Join(names, ", ")
	}
	for _, tc := range []struct {
		net, endpoint, servers string
		tls                    bool
	}{
		{netLoopback, "http://127.0.0.1:1", "versitygw", false},
		{netWAN, "http://127.0.0.1:2", "versitygw, wanproxy", false},
		{netTLS, "https://127.0.0.1:3", "versitygw tls", true},
		{netWANTLS, "https://127.0.0.1:4", "versitygw tls, wanproxy tls", true},
	} {
		for _, w := range []*workload{big, small} {
			cl := cell{dir: dirDownload, w: w, net: tc.net, mode: modeDurable}
			if got := procNames(srvs.serverProcs(cl)); got != tc.servers {
				t.Errorf("%s: server processes %s, want %s", cl.id(), got, tc.servers)
			}
			env := s.cellEnv(cl)
			hasCA := slices.Contains(env, "SSL_CERT_FILE=/tmp/tls/cert.pem") && slices.Contains(env, "AWS_CA_BUNDLE=/tmp/tls/cert.pem") &&
				slices.Contains(env, "SSL_CERT_DIR=/tmp/tls")
			others := slices.ContainsFunc(env, func(kv string) bool {
				k, v, _ := strings.Cut(kv, "=")
				return (k == "SSL_CERT_FILE" || k == "SSL_CERT_DIR" || k == "AWS_CA_BUNDLE") && !strings.HasPrefix(v, "/tmp/tls")
			})
			if hasCA != tc.tls || others {
				t.Errorf("%s: the certificate in the environment: %v, want %v", cl.id(), hasCA, tc.tls)
			}
			e := s.runEnv(cl, "/out")
			if e.endpoint != tc.endpoint {
				t.Errorf("%s: endpoint %s, want %s", cl.id(), e.endpoint, tc.endpoint)
			}
			n := 0
			for _, c := range contenders(o) {
				if !c.does(dirDownload) || c.fleet != nil {
					continue
				}
				n++
				_, args, _ := c.ways[dirDownload].cmd(e)
				line := strings.Join(args, " ")
				// Every command names the endpoint: a flag of its own, or
				// rclone's remote from the environment.
				if !strings.Contains(line, " "+tc.endpoint+" ") && c.name != "rclone" {
					t.Errorf("%s %s: %s, want the endpoint %s", cl.id(), c.name, line, tc.endpoint)
				}
				if ca := strings.Contains(line, "--ca-cert /tmp/tls/cert.pem"); ca != (tc.tls && c.name == "rclone") {
					t.Errorf("%s %s: --ca-cert %v: %s", cl.id(), c.name, ca, line)
				}
			}
			if n != 9 {
				t.Errorf("%d download contenders besides s3fleet, want 9", n)
			}
			_, _, rcloneEnv := contendersByName(o)["rclone"].ways[dirDownload].cmd(e)
			if !slices.Contains(rcloneEnv, "RCLONE_CONFIG_S3BENCH_ENDPOINT="+tc.endpoint) {
				t.Errorf("%s rclone: %q, want the endpoint %s", cl.id(), rcloneEnv, tc.endpoint)
			}
			// rclone's S3 backend fails on AWS_CA_BUNDLE: the last value
			// of the key, the one it gets, is empty.
			bundle := "unset"
			for _, kv := range append(env, rcloneEnv...) {
				if v, ok := strings.CutPrefix(kv, "AWS_CA_BUNDLE="); ok {
					bundle = v
				}
			}
			if want := map[bool]string{true: "", false: "unset"}[tc.tls]; bundle != want {
				t.Errorf("%s rclone: AWS_CA_BUNDLE %q, want %q", cl.id(), bundle, want)
			}
		}
	}
	// s3fleet's copies over HTTPS: rclone trusts the certificate too.
	cp := cell{dir: dirCopy, w: big, net: netTLS}
	srvs.tlsEndpointB = "https://127.0.0.1:5"
	_, args, env := contendersByName(o)["rclone tuned"].ways[dirCopy].cmd(s.runEnv(cp, "run-1/"))
	if !strings.Contains(strings.Join(args, " "), "--ca-cert /tmp/tls/cert.pem --s3-upload-concurrency 8") ||
		!slices.Contains(env, "RCLONE_CONFIG_DST_ENDPOINT=https://127.0.0.1:5") {
		t.Errorf("rclone tuned copy over HTTPS: %q %q", args, env)
	}
}

func contendersByName(o options) map[string]*contender {
	m := map[string]*contender{}
	for _, c := range contenders(o) {
		m[c.name] = c
	}
	return m
}

// TestTargetsTLS puts issue 15's goals over HTTPS in the targets table:
// the big object against s5cmd durable and scratch, the small objects,
// and the fleet's own CPU time against two thirds of s5cmd's.
func TestTargetsTLS(t *testing.T) {
	o := options{ref: "s3fleet 2w", fleetWorkers: []int{2}}
	gib := int64(1 << 30)
	big := &workload{id: "big", key: "big.bin", objects: []object{{key: "big.bin", size: gib}}, total: gib}
	small := &workload{id: "small", prefix: "small/", objects: make([]object, 10000), total: gib}
	s := &suite{opt: o, contenders: contenders(o), cells: []cell{
		{dir: dirDownload, w: big, net: netTLS, mode: modeDurable},
		{dir: dirDownload, w: big, net: netTLS, mode: modeScratch},
		{dir: dirDownload, w: small, net: netTLS, mode: modeDurable},
		{dir: dirDownload, w: big, net: netWANTLS, mode: modeDurable},
		{dir: dirDownload, w: big, net: netLoopback, mode: modeDurable},
	}}
	add := func(cl cell, name string, secs, cpu float64) {
		s.samples = append(s.samples, sample{cell: cl.id(), contender: name, elapsed: time.Duration(secs * float64(time.Second)),
			cpu: cpuUse{user: time.Duration(cpu * float64(time.Second))}, rssWorker: 40 << 20})
	}
	durable, scratch, smallTLS, wanTLS, plain := s.cells[0], s.cells[1], s.cells[2], s.cells[3], s.cells[4]
	add(durable, "s3fleet 2w", 1, 1)
	add(durable, "s5cmd", 2, 1.8)
	add(scratch, "s3fleet 2w", 1, 1.5)
	add(scratch, "s5cmd", 1.2, 1.8)
	add(smallTLS, "s3fleet 2w", 4, 30)
	add(smallTLS, "s5cmd", 5, 50)
	add(wanTLS, "s3fleet 2w", 2, 1)
	add(wanTLS, "s5cmd", 4, 1.2)
	add(plain, "s3fleet 2w", 1, 1)
	add(plain, "s5cmd", 1.6, 1)

	rows := tableRows(s.targets())
	want := [][]string{
		{"big/tls/durable", "s3fleet 2w 1074 MB/s", "s5cmd 537", "2.00×", "≥ 1.5×", "yes"},
		{"big/tls/durable", "s3fleet 2w own 1.00 CPU-s/GiB", "s5cmd 1.80", "0.56×", "≤ 0.67×", "yes"},
		{"big/tls/scratch", "s3fleet 2w 1074 MB/s", "s5cmd 895", "1.20×", "≥ 1.5×", "no"},
		{"big/tls/scratch", "s3fleet 2w own 1.50 CPU-s/GiB", "s5cmd 1.80", "0.83×", "≤ 0.67×", "no"},
		{"small/tls/durable", "s3fleet 2w 2500 objects/s", "s5cmd 2000", "1.25×", "≥ 1.3×", "no"},
		{"small/tls/durable", "s3fleet 2w own 30.00 CPU-s/GiB", "s5cmd 50.00", "0.60×", "≤ 0.67×", "yes"},
		{"big/wan-tls/durable", "s3fleet 2w own 1.00 CPU-s/GiB", "s5cmd 1.20", "0.83×", "≤ 0.67×", "no"},
		{"big/loopback/durable", "s3fleet 2w 1074 MB/s", "s5cmd 671", "1.60×", "≥ 1.5×", "yes"},
	}
	for _, cl := range s.cells {
		want = append(want, []string{cl.id(), "s3fleet 2w worker peak RSS 40 MiB", "–", "–", "< 64 MiB", "yes"})
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), s.targets())
	}
	for i := range want {
		if !slices.Equal(rows[i], want[i]) {
			t.Errorf("row %d: %q, want %q", i, rows[i], want[i])
		}
	}
	// The tables' titles name HTTPS.
	for _, tc := range []struct {
		cl   cell
		want string
	}{{durable, "one big, loopback, HTTPS, durable"}, {wanTLS, "one big, emulated WAN, HTTPS, durable"}} {
		tc.cl.w = &workload{id: "big", title: "one big"}
		if got := tc.cl.title(); got != tc.want {
			t.Errorf("title %q, want %q", got, tc.want)
		}
	}
}

// tableRows is a Markdown table's rows below its header and rule, each
// row's cells trimmed.
func tableRows(md string) [][]string {
	var rows [][]string
	for line := range strings.Lines(md) {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows[2:] // the header and its rule
}
