package faults

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestOnHostNetns: two worker hosts in network namespaces, named
// host-a and host-b. A download --on host-a, and an upload --on host-a of
// a tree the enqueuer is told is on host-a's disk (listed there by a list
// task), run on host-a's worker only: host-b's worker runs no task of
// either (no chunk, batch, assembly or listing in its log), and every
// byte arrives.
func TestOnHostNetns(t *testing.T) {
	tier(t)
	h := newHostsNet(t, "s3o", "10.78.0.")
	want := putMany(t, h.s3c, "bkt", 20, func(i int) string { return fmt.Sprintf("data/obj-%02d", i) },
		func(i int) int64 { return int64(50*kib + i*4099) })
	want["data/big.bin"] = putLarge(t, h.s3c, "bkt", "data/big.bin", 40*mib)

	tree := t.TempDir()
	files := map[string][]byte{}
	for i := range 5 {
		files[fmt.Sprintf("f%d.bin", i)] = randomData(300 * kib * (i + 1))
	}
	files["sub/large.bin"] = randomData(20 * mib)
	testenv.WriteTree(t, tree, files)
	env := append(os.Environ(), h.s3.Env()...)
	env = append(env, "S3FLEET_ALLOW_DEST="+os.TempDir(), "S3FLEET_REDIS="+h.redis.URL, "S3FLEET_ENDPOINT="+h.s3.Endpoint, "S3FLEET_RETRY_DELAY=100ms", "S3FLEET_POLL_INTERVAL=50ms",
		"S3FLEET_LOG_FORMAT=json", "S3FLEET_LOG_LEVEL=debug", "S3FLEET_CONCURRENCY=4", "S3FLEET_CHUNK_SIZE=8MiB")
	workers := map[string]*proc{}
	for i, name := range []string{"host-a", "host-b"} {
		ns, _, err := h.net.AddHost(t, fmt.Sprintf("%s-%c", h.tag, 'a'+i), 11+i)
		if err != nil {
			t.Fatal(err)
		}
		wenv := append(append([]string(nil), env...), "S3FLEET_HOST="+name, "S3FLEET_ALLOW_WRITE=s3://bkt/up/", "S3FLEET_ALLOW_SOURCE="+tree)
		workers[name] = start(t, name, wenv, ns.Command(filepath.Join(binDir, "worker")))
	}

	dest := t.TempDir()
	runs := 0
	enqueue := func(args ...string) {
		t.Helper()
		runs++
		p := start(t, fmt.Sprintf("enqueue-%d", runs), append(env, "S3FLEET_HOST=enqueuer"), h.srv.Command(filepath.Join(binDir, "enqueue"), append([]string{"--on", "host-a", "--wait"}, args...)...))
		if code, ok := p.wait(3 * time.Minute); !ok || code != 0 {
			t.Fatalf("enqueue --on host-a %s: ended %v, exit %d:\n%s", strings.Join(args, " "), ok, code, tail(p.log(), 3000))
		}
	}
	enqueue("s3://bkt/data/", dest+"/")
	verified := verify(t, dest, "data/", want)
	enqueue(tree+"/", "s3://bkt/up/")
	for rel, data := range files {
		out, err := h.s3c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("up/" + rel)})
		if err != nil {
			t.Fatalf("get up/%s: %v", rel, err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Errorf("up/%s: %d bytes (%v) differ from the file's %d", rel, len(got), err, len(data))
		}
	}

	work := func(p *proc) map[string]int {
		n := map[string]int{}
		for _, r := range p.logRecords() {
			switch m, _ := r["msg"].(string); m {
			case "chunk landed", "batch done", "object finalized", "files listed":
				n[m]++
			}
		}
		return n
	}
	a, b := work(workers["host-a"]), work(workers["host-b"])
	if len(b) != 0 {
		t.Errorf("host-b ran tasks of jobs --on host-a: %v", b)
	}
	if a["chunk landed"] == 0 || a["batch done"] == 0 || a["object finalized"] == 0 || a["files listed"] != 1 {
		t.Errorf("host-a's worker log: %v, want chunks, batches, assemblies and one listing", a)
	}
	summary(t, "--on host-a, two worker hosts in namespaces on 10.78.0.0/24: %d objects downloaded (%d verified) and %d files uploaded, listed on host-a; host-a ran %v, host-b nothing",
		len(want), verified, len(files), a)
}

func randomData(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
