package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/s3fleet/s3fleet/internal/testenv"
)

// TestSecretsNeverShown runs a job with a known AWS secret key and a Redis
// password (one object denied by S3, so error paths run too), then gathers
// everything the run produced: every log line of the workers and of each
// enqueue command, `enqueue status` (text and --json), and every key and
// value in Redis (asynq's task messages and results included), plus the
// output of commands given a wrong password or a wrong secret. Neither
// secret appears anywhere.
func TestSecretsNeverShown(t *testing.T) {
	tier(t)
	const (
		password    = "redis-pw-7Qz9xK2m"
		wrongPass   = "wrong-pw-Jr84nB1c"
		wrongSecret = "wrong-secret-Pq73Ld0z"
		// An SSE-C key the workers hold (base64 of 32 bytes): only its MD5
		// may ever travel.
		sseKey = "c2VjcmV0LXNzZS1jLWtleS0wMTIzNDU2Nzg5YWJjZGU="
	)
	secrets := []string{testenv.SecretKey, password, wrongPass, wrongSecret, sseKey, "secret-sse-c-key-0123456789abcde"}
	uiAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	f := newFleet(t, withRedisPassword(password))
	f.createBucket(t, "bkt")
	putMany(t, f.s3c, "bkt", 5, func(i int) string { return fmt.Sprintf("s/obj-%d", i) }, func(int) int64 { return 3 * kib })
	putLarge(t, f.s3c, "bkt", "s/big.bin", 20*mib)
	putBytes(t, f.s3c, "bkt", "s/denied", 100, false)
	f.proxy.SetRule(objectRule(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/denied") },
		testenv.Fault{Action: testenv.Status, Status: 403, Code: "AccessDenied"}))
	workers := []*proc{
		f.startWorker(t, "worker-1", "S3FLEET_SSE_C_KEY="+sseKey, "S3FLEET_UI="+uiAddr),
		f.startWorker(t, "worker-2", "S3FLEET_SSE_C_KEY="+sseKey),
	}

	outputs := map[string]string{}
	dest := t.TempDir()
	code, out := f.enqueue(t, "s3://bkt/s/", dest+"/", "--wait", "--job", "secret")
	if code != 1 || !strings.Contains(out, "access denied") {
		t.Fatalf("exit %d, want 1 with the denied object:\n%s", code, tail(out, 2000))
	}
	outputs["enqueue --wait"] = out
	for _, args := range [][]string{
		{"status", "secret"}, {"status", "secret", "--json", "--all"}, {"list"},
		{"retry", "secret", "--wait"},
	} {
		_, outputs["enqueue "+strings.Join(args, " ")] = f.enqueue(t, args...)
	}
	// Wrong credentials: the errors must not echo them either.
	wrongRedis := "S3FLEET_REDIS=redis://:" + wrongPass + "@" + f.redis.Addr + "/0"
	code, out = f.enqueueEnv(t, []string{wrongRedis}, "s3://bkt/s/obj-0", t.TempDir()+"/x")
	if code == 0 {
		t.Errorf("enqueue with a wrong Redis password succeeded: %s", out)
	}
	outputs["enqueue, wrong Redis password"] = out
	ww := f.startWorker(t, "worker-wrong-password", wrongRedis)
	if _, ok := ww.wait(30 * 1e9); !ok {
		t.Error("a worker with a wrong Redis password did not exit within 30 s")
	}
	outputs["worker, wrong Redis password"] = ww.log()
	code, out = f.enqueueEnv(t, []string{"AWS_SECRET_ACCESS_KEY=" + wrongSecret}, "s3://bkt/s/obj-0", t.TempDir()+"/x")
	if code == 0 {
		t.Errorf("enqueue with a wrong AWS secret succeeded: %s", out)
	}
	outputs["enqueue, wrong AWS secret"] = out
	// What the web UI and /metrics serve.
	for _, path := range []string{"/metrics", "/healthz", "/ui/api/queues", "/ui/api/servers",
		"/ui/api/queues/assemble/completed_tasks", "/ui/api/queues/chunks/completed_tasks",
		"/ui/api/queues/chunks/archived_tasks", "/ui/api/redis_info"} {
		resp, err := http.Get("http://" + uiAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		outputs["web UI "+path] = string(body)
	}
	lines := 0
	for _, w := range workers {
		outputs[w.name+" log"] = w.log()
	}
	for _, o := range outputs {
		lines += strings.Count(o, "\n")
	}

	dump, keys := dumpRedis(t, f.rdb)
	outputs["Redis (every key and value)"] = dump
	for what, text := range outputs {
		t.Logf("%s: %d bytes, last line %q", what, len(text), tail(strings.TrimSpace(text), 160))
		for _, s := range secrets {
			if i := strings.Index(text, s); i >= 0 {
				t.Errorf("%s shows the secret %q: …%s…", what, s, text[max(0, i-200):min(len(text), i+len(s)+50)])
			}
		}
	}
	summary(t, "searched %d output lines of %d commands and web pages and %d Redis keys (%d bytes) for the AWS secret, the SSE-C key and the Redis password (right and wrong ones): none found",
		lines, len(outputs)-1, keys, len(dump))
}

// dumpRedis renders every key of the database and its value as text.
func dumpRedis(t *testing.T, rdb redis.UniversalClient) (string, int) {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	n := 0
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		n++
		typ, err := rdb.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s (%s): ", key, typ)
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, key).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, key).Result()
		case "list":
			v, err = rdb.LRange(ctx, key, 0, -1).Result()
		case "set":
			v, err = rdb.SMembers(ctx, key).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, key, "-", "+").Result()
		default:
			v = "(type not dumped)"
		}
		if err != nil && err != redis.Nil {
			t.Fatalf("read %s: %v", key, err)
		}
		fmt.Fprintf(&b, "%v\n", v)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String(), n
}
