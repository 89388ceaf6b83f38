package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRedisStatsDelta(t *testing.T) {
	before := parseRedisInfo("# Stats\r\ntotal_commands_processed:100\r\ntotal_net_input_bytes:1000\r\n" +
		"total_net_output_bytes:5000\r\ntotal_reads_processed:90\r\n# Commandstats\r\n" +
		"cmdstat_evalsha:calls=10,usec=5,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=3,usec=1\r\n")
	before.reply = 200
	after := parseRedisInfo("total_commands_processed:150\r\ntotal_net_input_bytes:3000\r\ntotal_net_output_bytes:8000\r\n" +
		"total_reads_processed:130\r\ncmdstat_evalsha:calls=40,usec=9\r\ncmdstat_info:calls=4,usec=1\r\n" +
		"cmdstat_slowlog|reset:calls=1,usec=1\r\ncmdstat_hgetall:calls=8,usec=1\r\n")
	d := after.sub(before)
	if d.calls["evalsha"] != 30 || d.calls["hgetall"] != 8 || len(d.calls) != 2 {
		t.Errorf("calls %v: want evalsha 30, hgetall 8 and nothing of the suite's own", d.calls)
	}
	if d.total() != 38 || d.commands != 48 || d.reads != 38 {
		t.Errorf("total %d, commands %d, reads %d: want 38, 48, 38", d.total(), d.commands, d.reads)
	}
	if d.netIn != 2000-ownIn || d.netOut != 3000-200-ownOut {
		t.Errorf("bytes in %d, out %d: want %d, %d", d.netIn, d.netOut, 2000-ownIn, 3000-200-ownOut)
	}
}

// TestFindScripts finds scripts made of literals and constants, and names
// them by the SHA-1 Redis gives them.
func TestFindScripts(t *testing.T) {
	dir := t.TempDir()
	pkg := filepath.Join(dir, "ledger")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"a.go": "package ledger\n\nconst common = `local x = 1\n`\nconst more = common + \"-- more\\n\"\n",
		"b.go": "package ledger\n\nimport \"github.com/redis/go-redis/v9\"\n\n" +
			"var plainScript = redis.NewScript(`return 1`)\n" +
			"var joinedScript = redis.NewScript(more + (`return 2`))\n" +
			"var dynamicScript = redis.NewScript(fmt.Sprintf(\"return %d\", 3))\n",
		"b_test.go": "package ledger\n\nvar testScript = redis.NewScript(`return 4`)\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(pkg, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := findScripts(map[string]string{dir: ""})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"e0e1f9fabfc9d4800c877a703b823ac0578ff8db":  "plainScript", // redis-cli SCRIPT LOAD "return 1"
		scriptSHA("local x = 1\n-- more\nreturn 2"): "joinedScript",
	}
	if len(cat) != len(want) {
		t.Errorf("found %d scripts, want %d: %v", len(cat), len(want), cat)
	}
	for sha, name := range want {
		if s, ok := cat[sha]; !ok || s.name != name || s.origin != "ledger" {
			t.Errorf("script %s: got %+v, want %s of ledger", sha, s, name)
		}
	}
}

func TestAttribute(t *testing.T) {
	cat := scriptCatalogue{
		scriptSHA("return 1"):              {name: "dequeueCmd", origin: "asynq", src: "return 1"},
		scriptSHA("local x = 1\nreturn 2"): {name: "chunkDoneScript", origin: "ledger", src: "local x = 1\nreturn 2"},
	}
	entry := func(id int64, addr string, args ...string) redis.SlowLog {
		return redis.SlowLog{ID: id, ClientAddr: addr, Args: args}
	}
	w, e := "10.78.3.2:40000", "10.78.0.2:50000"
	// Newest first, as SLOWLOG GET returns them.
	entries := []redis.SlowLog{
		entry(9, "127.0.0.1:6000", "info", "stats"),
		entry(8, e, "HGETALL", "{s3fleet}:job:x"),
		entry(7, w, "evalsha", scriptSHA("local x = 1\nreturn 2"), "1", "k"),
		entry(6, "?:0", "hset", "k", "a", "1"),
		entry(5, "?:0", "hincrby", "k", "b", "1"),
		entry(4, w, "evalsha", scriptSHA("return 1"), "0"),
		entry(3, w, "EVALSHA", "ffffffffffffffffffff", "0"),
		entry(2, "?:0", "exists", "p"),
		entry(1, w, "CLIENT", "SETNAME", "x"),
		entry(0, e, "eval", "local x = 1... (12 more bytes)", "0"),
	}
	c := cat.attribute(entries)
	check := func(what string, got, want int64) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %d, want %d", what, got, want)
		}
	}
	check("workers' chunkDone", c.top[byWorkers][callKey{"ledger", "chunkDoneScript"}], 1)
	check("commands inside chunkDone", c.inside[callKey{"ledger", "chunkDoneScript"}], 2)
	check("workers' dequeue", c.top[byWorkers][callKey{"asynq", "dequeueCmd"}], 1)
	check("commands inside dequeue", c.inside[callKey{"asynq", "dequeueCmd"}], 0)
	check("unknown script", c.top[byWorkers][callKey{"?", "script ffffffff"}], 1)
	check("commands inside the unknown script", c.inside[callKey{"?", "script ffffffff"}], 1)
	check("client|setname", c.top[byWorkers][callKey{"", "client|setname"}], 1)
	check("enqueue's HGETALL", c.top[byEnqueue][callKey{"", "hgetall"}], 1)
	check("enqueue's EVAL", c.top[byEnqueue][callKey{"ledger", "chunkDoneScript (EVAL)"}], 1)
	check("all calls", c.total(""), 6)
	check("the enqueue's", c.total(byEnqueue), 2)
	check("inside", c.insideTotal(), 3)
}
