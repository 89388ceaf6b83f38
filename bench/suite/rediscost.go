package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Redis cost of a workload: what the fleet asked of Redis, from the
// deltas of INFO stats and INFO commandstats around it, and, to tell the
// calls apart, from Redis's slow log with a threshold of 0 (every command,
// its arguments and its client, in order): an EVALSHA's first argument
// names its script, and the commands a script runs are logged just before
// it, by a client of no address.

// redisStats is a snapshot (or a delta) of INFO stats and commandstats.
type redisStats struct {
	calls    map[string]int64 // commandstats: calls by command (subcommands as "config|set"), those inside scripts included
	netIn    int64            // total_net_input_bytes
	netOut   int64            // total_net_output_bytes
	commands int64            // total_commands_processed
	reads    int64            // total_reads_processed: reads of a client's socket, about one per request or pipeline
	reply    int64            // the size of this snapshot's own reply, sent after it was taken
}

// readRedisStats takes a snapshot with one INFO call.
func readRedisStats(ctx context.Context, rdb *redis.Client) (redisStats, error) {
	text, err := rdb.Info(ctx, "stats", "commandstats").Result()
	if err != nil {
		return redisStats{}, fmt.Errorf("redis INFO: %w", err)
	}
	st := parseRedisInfo(text)
	st.reply = int64(len(text)) + int64(len(strconv.Itoa(len(text)))) + 5 // $N\r\n…\r\n
	return st, nil
}

func parseRedisInfo(text string) redisStats {
	st := redisStats{calls: map[string]int64{}}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if cmd, ok := strings.CutPrefix(k, "cmdstat_"); ok {
			for f := range strings.SplitSeq(v, ",") {
				if n, ok := strings.CutPrefix(f, "calls="); ok {
					st.calls[cmd], _ = strconv.ParseInt(n, 10, 64)
				}
			}
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "total_net_input_bytes":
			st.netIn = n
		case "total_net_output_bytes":
			st.netOut = n
		case "total_commands_processed":
			st.commands = n
		case "total_reads_processed":
			st.reads = n
		}
	}
	return st
}

// The suite's own requests inside a spell: the last snapshot's INFO and
// the SLOWLOG RESET after the first, as RESP; and the reset's +OK.
const (
	ownIn  = int64(len("*3\r\n$4\r\ninfo\r\n$5\r\nstats\r\n$12\r\ncommandstats\r\n") + len("*2\r\n$7\r\nSLOWLOG\r\n$5\r\nRESET\r\n"))
	ownOut = int64(len("+OK\r\n"))
)

// sub is the delta from before to st, less the suite's own traffic: the
// first snapshot's INFO call and reply, and the SLOWLOG RESET after it
// (the last snapshot's INFO call is in neither its own counts nor its
// reply).
func (st redisStats) sub(before redisStats) redisStats {
	d := redisStats{calls: map[string]int64{}, netIn: st.netIn - before.netIn - ownIn, netOut: st.netOut - before.netOut - before.reply - ownOut,
		commands: st.commands - before.commands, reads: st.reads - before.reads}
	for k, v := range st.calls {
		if n := v - before.calls[k]; n != 0 {
			d.calls[k] = n
		}
	}
	own := []string{"info", "slowlog|reset"}
	for _, k := range own {
		if d.calls[k]--; d.calls[k] <= 0 {
			delete(d.calls, k)
		}
	}
	d.commands -= int64(len(own))
	d.reads -= int64(len(own))
	return d
}

// total is the number of calls commandstats counted.
func (st redisStats) total() int64 {
	var n int64
	for _, v := range st.calls {
		n += v
	}
	return n
}

// script is one Lua script of the fleet's code: where it is defined.
type script struct {
	name   string // the Go variable holding it: dequeueCmd, chunkDoneScript, …
	origin string // asynq, or the product's package: ledger, liveness, …
	src    string
}

// scriptCatalogue is every script found, by the SHA-1 of its source (the
// name EVALSHA calls it by).
type scriptCatalogue map[string]script

// findScripts reads the Go sources under each root (origin: its label, or
// "" for the package's own name) for redis.NewScript calls whose source is
// a constant expression (string literals and constants joined with +).
func findScripts(roots map[string]string) (scriptCatalogue, error) {
	cat := scriptCatalogue{}
	for root, origin := range roots {
		pkgs := map[string][]*ast.File{}
		fset := token.NewFileSet()
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				switch d.Name() {
				case ".git", "testdata", "vendor", "bench", "node_modules":
					if p != root {
						return filepath.SkipDir
					}
				}
				return nil
			}
			if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, p, nil, 0)
			if err != nil {
				return nil // not ours to judge
			}
			pkgs[filepath.Dir(p)] = append(pkgs[filepath.Dir(p)], f)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read the scripts under %s: %w", root, err)
		}
		for dir, files := range pkgs {
			label := origin
			if label == "" {
				label = filepath.Base(dir)
			}
			for _, s := range packageScripts(files) {
				s.origin = label
				cat[scriptSHA(s.src)] = s
			}
		}
	}
	return cat, nil
}

func scriptSHA(src string) string {
	h := sha1.Sum([]byte(src))
	return hex.EncodeToString(h[:])
}

// packageScripts finds the NewScript calls of one package's files.
func packageScripts(files []*ast.File) []script {
	consts := map[string]ast.Expr{}
	for _, f := range files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, sp := range g.Specs {
				vs := sp.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						consts[n.Name] = vs.Values[i]
					}
				}
			}
		}
	}
	var out []script
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range vs.Values {
				call, ok := v.(*ast.CallExpr)
				if !ok || len(call.Args) != 1 || i >= len(vs.Names) {
					continue
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "NewScript" {
					continue
				}
				if src, ok := constString(call.Args[0], consts, 0); ok {
					out = append(out, script{name: vs.Names[i].Name, src: src})
				}
			}
			return true
		})
	}
	return out
}

// constString evaluates a constant string expression.
func constString(e ast.Expr, consts map[string]ast.Expr, depth int) (string, bool) {
	if depth > 20 {
		return "", false
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.ParenExpr:
		return constString(e.X, consts, depth+1)
	case *ast.Ident:
		v, ok := consts[e.Name]
		if !ok {
			return "", false
		}
		return constString(v, consts, depth+1)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok := constString(e.X, consts, depth+1)
		if !ok {
			return "", false
		}
		b, ok := constString(e.Y, consts, depth+1)
		return a + b, ok
	}
	return "", false
}

// moduleDir is where the Go toolchain keeps a module the tree at dir
// depends on.
func moduleDir(dir, module string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", fmt.Errorf("go list -m %s in %s: %v", module, dir, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// load loads every script into Redis, so that no EVALSHA of the fleet
// misses and falls back to EVAL, and checks that Redis names each by
// the SHA-1 the catalogue has.
func (cat scriptCatalogue) load(ctx context.Context, rdb *redis.Client) error {
	for sha, s := range cat {
		got, err := rdb.ScriptLoad(ctx, s.src).Result()
		if err != nil {
			return fmt.Errorf("SCRIPT LOAD %s (%s): %w", s.name, s.origin, err)
		}
		if got != sha {
			return fmt.Errorf("SCRIPT LOAD %s: Redis names it %s, not %s", s.name, got, sha)
		}
	}
	return nil
}

// Who made a call, from its client address.
const (
	byWorkers = "workers"
	byEnqueue = "enqueue"
	bySuite   = "suite"
	byScript  = "script" // a command a script ran
)

// clientOf tells the caller of a slow log entry by its address: a worker
// host's (10.78.N.2, N ≥ 1), the control host's (the enqueue), the
// suite's own (loopback), or none (a command run by a script).
func clientOf(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" || host == "?" || host == "" {
		return byScript
	}
	switch {
	case host == subnetBase+"0.2":
		return byEnqueue
	case strings.HasPrefix(host, subnetBase):
		return byWorkers
	}
	return bySuite
}

// callKey names a kind of call: a script of an origin, or a plain command
// (origin "").
type callKey struct {
	origin, name string
}

func (k callKey) String() string {
	if k.origin == "" {
		return strings.ToUpper(k.name)
	}
	return k.origin + " " + k.name
}

// callCounts are the calls of a workload, told apart.
type callCounts struct {
	top     map[string]map[callKey]int64 // by client (workers, enqueue): the calls they sent
	inside  map[callKey]int64            // by script: the commands it ran
	entries int                          // slow log entries read
	lost    bool                         // the slow log overflowed: the counts are short
}

func newCallCounts() callCounts {
	return callCounts{top: map[string]map[callKey]int64{byWorkers: {}, byEnqueue: {}}, inside: map[callKey]int64{}}
}

// containers are the commands whose first argument is a subcommand, as
// commandstats names them.
var containers = map[string]bool{"client": true, "config": true, "script": true, "command": true, "object": true,
	"memory": true, "slowlog": true, "cluster": true, "function": true, "pubsub": true, "xinfo": true, "latency": true}

// attribute counts slow log entries (in any order) by client and kind,
// the EVALSHA calls by script.
func (cat scriptCatalogue) attribute(entries []redis.SlowLog) callCounts {
	c := newCallCounts()
	c.entries = len(entries)
	sorted := slices.SortedFunc(slices.Values(entries), func(a, b redis.SlowLog) int { return int(a.ID - b.ID) })
	inner := int64(0) // commands run by the script about to be logged
	for _, e := range sorted {
		if len(e.Args) == 0 {
			continue
		}
		who := clientOf(e.ClientAddr)
		if who == byScript {
			inner++
			continue
		}
		k := cat.keyOf(e.Args)
		if who != bySuite {
			c.top[who][k]++
			if inner > 0 {
				c.inside[k] += inner
			}
		}
		inner = 0
	}
	return c
}

// keyOf names a logged call.
func (cat scriptCatalogue) keyOf(args []string) callKey {
	name := strings.ToLower(args[0])
	switch {
	case (name == "evalsha" || name == "evalsha_ro") && len(args) > 1:
		if s, ok := cat[strings.ToLower(args[1])]; ok {
			return callKey{s.origin, s.name}
		}
		return callKey{"?", "script " + shortSHA(args[1])}
	case (name == "eval" || name == "eval_ro") && len(args) > 1:
		// The slow log keeps 128 bytes of the source: enough for most.
		src := args[1]
		if i := strings.Index(src, "... ("); i > 0 {
			src = src[:i]
		}
		var found []script
		for _, s := range cat {
			if strings.HasPrefix(s.src, src) {
				found = append(found, s)
			}
		}
		if len(found) == 1 {
			return callKey{found[0].origin, found[0].name + " (EVAL)"}
		}
		return callKey{"?", "EVAL"}
	case containers[name] && len(args) > 1:
		return callKey{"", name + "|" + strings.ToLower(args[1])}
	}
	return callKey{"", name}
}

func shortSHA(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// total sums the calls of a client ("" for all clients).
func (c callCounts) total(who string) int64 {
	var n int64
	for w, m := range c.top {
		if who != "" && w != who {
			continue
		}
		for _, v := range m {
			n += v
		}
	}
	return n
}

// insideTotal is the number of commands scripts ran.
func (c callCounts) insideTotal() int64 {
	var n int64
	for _, v := range c.inside {
		n += v
	}
	return n
}

// insideOf is the number of commands a script ran a call, on average.
func (c callCounts) insideOf(k callKey) float64 {
	if n := c.byKey()[k]; n > 0 {
		return float64(c.inside[k]) / float64(n)
	}
	return 0
}

// byKey sums a kind of call over the clients.
func (c callCounts) byKey() map[callKey]int64 {
	out := map[callKey]int64{}
	for _, m := range c.top {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}

// redisCost is what a workload (or an idle spell) cost Redis.
type redisCost struct {
	stats redisStats // deltas
	calls callCounts
}

// costMeter measures one spell: a snapshot and a fresh slow log at start,
// the deltas and the slow log's entries at the end.
type costMeter struct {
	rdb    *redis.Client
	cat    scriptCatalogue
	before redisStats
}

// slowLogMax bounds the slow log; a spell that logs more loses its oldest
// entries (and says so).
const slowLogMax = 5_000_000

// setupSlowLog makes Redis log every command.
func setupSlowLog(ctx context.Context, rdb *redis.Client) error {
	for _, kv := range [][2]string{{"slowlog-log-slower-than", "0"}, {"slowlog-max-len", strconv.Itoa(slowLogMax)}} {
		if err := rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			return fmt.Errorf("redis CONFIG SET %s: %w", kv[0], err)
		}
	}
	return nil
}

func startMeter(ctx context.Context, rdb *redis.Client, cat scriptCatalogue) (*costMeter, error) {
	before, err := readRedisStats(ctx, rdb)
	if err != nil {
		return nil, err
	}
	if err := rdb.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		return nil, fmt.Errorf("redis SLOWLOG RESET: %w", err)
	}
	return &costMeter{rdb: rdb, cat: cat, before: before}, nil
}

func (m *costMeter) stop(ctx context.Context) (redisCost, error) {
	after, err := readRedisStats(ctx, m.rdb)
	if err != nil {
		return redisCost{}, err
	}
	entries, err := m.rdb.SlowLogGet(ctx, -1).Result()
	if err != nil {
		return redisCost{}, fmt.Errorf("redis SLOWLOG GET: %w", err)
	}
	if err := m.rdb.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		return redisCost{}, fmt.Errorf("redis SLOWLOG RESET: %w", err)
	}
	c := redisCost{stats: after.sub(m.before), calls: m.cat.attribute(entries)}
	c.calls.lost = len(entries) >= slowLogMax
	return c, nil
}

// origins are the script origins of the calls, sorted, "" (plain
// commands) last.
func origins(keys []callKey) []string {
	set := map[string]bool{}
	for _, k := range keys {
		set[k.origin] = true
	}
	out := slices.Sorted(maps.Keys(set))
	if len(out) > 0 && out[0] == "" {
		out = append(out[1:], "")
	}
	return out
}
