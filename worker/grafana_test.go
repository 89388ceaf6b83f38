package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/s3fleet/s3fleet/internal/fleettest"
	"github.com/s3fleet/s3fleet/internal/testenv"
	"github.com/s3fleet/s3fleet/worker"
)

// grafanaDashboardFile is the dashboard under test, from this package's
// directory.
const grafanaDashboardFile = "../deploy/grafana/s3fleet.json"

// grafanaDatasource is the datasource every panel and query must name: the
// dashboard's own datasource variable, so it imports into any Grafana
// whatever its Prometheus is called.
const grafanaDatasource = "${DS_PROMETHEUS}"

// grafanaAnyMetrics marks, in a row's title, the rows whose metrics every
// /metrics serves, enqueue ui's included (no worker needed).
const grafanaAnyMetrics = "any /metrics"

// TestGrafanaDashboardShape checks the dashboard without a fleet: it has
// panels, every panel has a query, every query parses and names its metrics,
// ids are unique and everything reads the DS_PROMETHEUS variable. It also
// feeds broken dashboards to the same checks, which must say what is wrong.
func TestGrafanaDashboardShape(t *testing.T) {
	t.Parallel()
	raw := readDashboard(t)
	d, err := parseDashboard(raw)
	if err != nil {
		t.Fatalf("%s: %v", grafanaDashboardFile, err)
	}
	queries, problems := dashboardQueries(d)
	for _, p := range problems {
		t.Errorf("%s: %s", grafanaDashboardFile, p)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("%s: schemaVersion %d, want 36 or later (datasource references by uid)", grafanaDashboardFile, d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: uid %q, title %q: both must be set", grafanaDashboardFile, d.UID, d.Title)
	}
	if !slices.ContainsFunc(queries, func(q dashQuery) bool { return strings.Contains(q.row, grafanaAnyMetrics) }) {
		t.Errorf("%s: no row titled with %q: the queue panels enqueue ui serves belong in one", grafanaDashboardFile, grafanaAnyMetrics)
	}
	metrics := map[string]bool{}
	for _, q := range queries {
		for _, m := range q.refs.metrics {
			metrics[m] = true
		}
	}
	t.Logf("%d queries over %d metrics: %s", len(queries), len(metrics), strings.Join(slices.Sorted(maps.Keys(metrics)), " "))

	broken := []struct {
		name, json, want string
	}{
		{"no panels", `{"schemaVersion":39,"panels":[]}`, "the dashboard has no panels"},
		{"only rows", `{"panels":[{"id":1,"type":"row","title":"r","panels":[]}]}`, "no panel with a query"},
		{"a panel without targets", `{"panels":[{"id":1,"type":"timeseries","title":"Empty","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"}}]}`,
			`panel "Empty" has no query`},
		{"a target without expr", `{"panels":[{"id":1,"type":"stat","title":"Blank","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"},"targets":[{"refId":"A","expr":" "}]}]}`,
			`panel "Blank" query A has no expr`},
		{"a panel in a collapsed row without targets", `{"panels":[{"id":1,"type":"row","title":"Hidden","collapsed":true,"panels":[{"id":2,"type":"timeseries","title":"Inner","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"}}]}]}`,
			`panel "Inner" (row "Hidden") has no query`},
		{"a fixed datasource", `{"panels":[{"id":1,"type":"stat","title":"Fixed","datasource":{"type":"prometheus","uid":"P1809F7CD0C75ACF3"},"targets":[{"refId":"A","expr":"s3fleet_backlog"}]}]}`,
			`names datasource uid "P1809F7CD0C75ACF3"`},
		{"a query that does not parse", `{"panels":[{"id":1,"type":"stat","title":"Typo","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"},"targets":[{"refId":"A","expr":"rat(s3fleet_backlog[5m])"}]}]}`,
			`panel "Typo" query A: unknown function rat`},
		{"duplicate ids", `{"panels":[{"id":3,"type":"stat","title":"One","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"},"targets":[{"refId":"A","expr":"s3fleet_backlog"}]},{"id":3,"type":"stat","title":"Two","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"},"targets":[{"refId":"A","expr":"s3fleet_backlog"}]}]}`,
			`panels "One" and "Two" share the id 3`},
		{"no datasource variable", `{"panels":[{"id":1,"type":"stat","title":"S","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"},"targets":[{"refId":"A","expr":"s3fleet_backlog"}]}]}`,
			`no datasource variable DS_PROMETHEUS`},
	}
	for _, b := range broken {
		d, err := parseDashboard([]byte(b.json))
		if err != nil {
			t.Errorf("%s: %v", b.name, err)
			continue
		}
		_, problems := dashboardQueries(d)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, b.want) }) {
			t.Errorf("%s: the checks found %q, want a problem containing %q", b.name, problems, b.want)
		}
	}
}

// TestGrafanaPromQLNames checks the PromQL reader the dashboard test uses:
// the metric names it finds, the labels it sees, and what it refuses (an
// unknown function, a selector whose metric it cannot name).
func TestGrafanaPromQLNames(t *testing.T) {
	t.Parallel()
	cases := []struct {
		expr     string
		metrics  []string
		matchers map[string][]string
		grouping []string
	}{
		{expr: `up`, metrics: []string{"up"}},
		{expr: `sum by (worker) (rate(s3fleet_bytes_downloaded_total{job=~"$job", worker=~"$worker"}[$__rate_interval]))`,
			metrics: []string{"s3fleet_bytes_downloaded_total"}, matchers: map[string][]string{"s3fleet_bytes_downloaded_total": {"job", "worker"}},
			grouping: []string{"worker"}},
		{expr: `histogram_quantile(0.95, sum(rate(a_bucket{x="}, by (y) {"}[5m:1m] offset -1h30m)) by (le, worker))`,
			metrics: []string{"a_bucket"}, matchers: map[string][]string{"a_bucket": {"x"}}, grouping: []string{"le", "worker"}},
		{expr: "sum without(instance) (a) / on (queue) group_left(state) b and c unless d or e atan2 f > bool 1e-3",
			metrics: []string{"a", "b", "c", "d", "e", "f"}, grouping: []string{"instance", "queue", "state"}},
		{expr: `label_replace(topk(5, x:rate5m), "dst", "$1", 'src', "(.*)") # a comment naming not_a_metric`,
			metrics: []string{"x:rate5m"}},
		{expr: `{__name__="s3fleet_backlog", job="fleet"} + {"utf8.metric", a='b'} + count_values("v", NaN + Inf + 0x1F + .5 + y @ start())`,
			metrics: []string{"s3fleet_backlog", "utf8.metric", "y"}, matchers: map[string][]string{"s3fleet_backlog": {"job"}, "utf8.metric": {"a"}}},
		{expr: "SUM BY (q) (Max(a offset 5m))", metrics: []string{"a"}, grouping: []string{"q"}},
		{expr: "max(s3fleet_backlog{job=~\"$job\"}) * ${factor} - time()", metrics: []string{"s3fleet_backlog"},
			matchers: map[string][]string{"s3fleet_backlog": {"job"}}},
	}
	for _, c := range cases {
		r, err := parsePromQL(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !slices.Equal(r.metrics, c.metrics) {
			t.Errorf("%s: metrics %q, want %q", c.expr, r.metrics, c.metrics)
		}
		if c.matchers == nil {
			c.matchers = map[string][]string{}
		}
		for m, ls := range r.matchers {
			if len(ls) == 0 {
				delete(r.matchers, m)
			}
		}
		if fmt.Sprint(r.matchers) != fmt.Sprint(c.matchers) {
			t.Errorf("%s: matcher labels %v, want %v", c.expr, r.matchers, c.matchers)
		}
		if !slices.Equal(r.grouping, c.grouping) {
			t.Errorf("%s: grouping labels %q, want %q", c.expr, r.grouping, c.grouping)
		}
	}
	for expr, want := range map[string]string{
		`rat(s3fleet_backlog[5m])`: "unknown function rat",
		`{job="x"}`:                "no metric name",
		`{__name__=~"s3fleet_.*"}`: `__name__=~`,
		`sum(a{b="c)`:              "unterminated string",
		`rate(a[5m)`:               "unterminated [",
		`a{b="c"`:                  "unterminated {",
		`sum by (le, "x) (a)`:      "unterminated string",
		`a{b}`:                     "want =, !=, =~ or !~",
		`x{__name__="y"}`:          "names two metrics",
		`sum by (le (rate(a[5m]))`: "want a label name",
	} {
		_, err := parsePromQL(expr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", expr, err, want)
		}
	}
}

// TestGrafanaMetricsExported runs a worker with its UI and an enqueue ui
// monitor against a real Redis and S3 server, moves an object so that the
// worker's counters exist, scrapes both /metrics, and fails naming every
// metric (or label) a query of the dashboard uses that the fleet does not
// export: worker --ui for every query, enqueue ui for the rows titled
// "any /metrics" and the job variable. Then it renames, one at a time,
// each metric in the dashboard's JSON and checks that the rename is caught.
func TestGrafanaMetricsExported(t *testing.T) {
	t.Parallel()
	raw := readDashboard(t)
	d, err := parseDashboard(raw)
	if err != nil {
		t.Fatalf("%s: %v", grafanaDashboardFile, err)
	}
	queries, problems := dashboardQueries(d)
	if len(problems) > 0 {
		t.Fatalf("%s:\n%s", grafanaDashboardFile, strings.Join(problems, "\n"))
	}

	f := fleettest.New(t)
	f.S3.CreateBucket(t, "bkt")
	f.S3.PutRandom(t, "bkt", "dash.bin", 3*mib+5, true)
	cfg := f.Config()
	cfg.UI = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	fleettest.StartWorker(t, cfg)
	c := fleettest.NewClient(t, cfg)
	sum, err := c.Submit(context.Background(), fleettest.Request("s3://bkt/dash.bin", filepath.Join(t.TempDir(), "dash.bin")))
	if err != nil {
		t.Fatal(err)
	}
	if j := c.Wait(t, sum.Job, time.Minute); j.Failed > 0 {
		c.LogObjects(t, sum.Job)
		t.Fatalf("job %s: %d objects failed", sum.Job, j.Failed)
	}
	// The ledger records the object before its assembler counts it, so the
	// job can be done a moment before the counters are.
	workerMetrics := scrapeMetrics(t, "worker --ui", "http://"+cfg.UI, "s3fleet_objects_verified_total")

	mon := cfg
	mon.UI = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	mon.UIReadOnly = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.ServeUI(ctx, mon, slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("enqueue ui: %v", err)
		}
	})
	monitorMetrics := scrapeMetrics(t, "enqueue ui", "http://"+mon.UI)

	for _, p := range checkExported(queries, workerMetrics, "worker --ui") {
		t.Error(p)
	}
	var anyMetrics []dashQuery
	for _, q := range queries {
		if strings.Contains(q.row, grafanaAnyMetrics) || q.variable == "job" {
			anyMetrics = append(anyMetrics, q)
		}
	}
	if len(anyMetrics) == 0 {
		t.Errorf("%s: no row titled with %q and no job variable: nothing to check against enqueue ui", grafanaDashboardFile, grafanaAnyMetrics)
	}
	for _, p := range checkExported(anyMetrics, monitorMetrics, "enqueue ui") {
		t.Error(p)
	}

	used := map[string]bool{}
	for _, q := range queries {
		for _, m := range q.refs.metrics {
			used[m] = true
		}
	}
	var families []string
	for m := range used {
		families = append(families, workerMetrics.family(m))
	}
	slices.Sort(families)
	families = slices.Compact(families)
	if !t.Failed() {
		t.Logf("%d queries use %d series of %d families, all exported: %s", len(queries), len(used), len(families), strings.Join(families, " "))
	}

	// The check must catch a rename of any metric in the JSON.
	for m := range used {
		renamed := m + "_renamed"
		mutated := regexp.MustCompile(`\b`+regexp.QuoteMeta(m)+`\b`).ReplaceAll(raw, []byte(renamed))
		md, err := parseDashboard(mutated)
		if err != nil {
			t.Errorf("dashboard with %s renamed: %v", m, err)
			continue
		}
		mq, problems := dashboardQueries(md)
		problems = append(problems, checkExported(mq, workerMetrics, "worker --ui")...)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, " "+renamed+",") }) {
			t.Errorf("renaming %s to %s in the dashboard went unnoticed: %q", m, renamed, problems)
		}
	}
}

// tLogWriter sends a logger's lines to the test's log.
type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// readDashboard reads the dashboard file, failing the test without it.
func readDashboard(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile(grafanaDashboardFile)
	if err != nil {
		t.Fatalf("the Grafana dashboard: %v", err)
	}
	return raw
}

// grafanaDashboard is the part of a Grafana dashboard's JSON the checks read.
type grafanaDashboard struct {
	SchemaVersion int            `json:"schemaVersion"`
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
}

// grafanaPanel is a panel, or a row whose panels (when collapsed) it holds.
type grafanaPanel struct {
	ID         int             `json:"id"`
	Title      string          `json:"title"`
	Type       string          `json:"type"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []grafanaTarget `json:"targets"`
	Panels     []grafanaPanel  `json:"panels"`
}

// grafanaTarget is one query of a panel.
type grafanaTarget struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Datasource json.RawMessage `json:"datasource"`
}

// grafanaVariable is a template variable.
type grafanaVariable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource json.RawMessage `json:"datasource"`
}

// parseDashboard decodes a dashboard's JSON.
func parseDashboard(raw []byte) (grafanaDashboard, error) {
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("not a dashboard's JSON: %w", err)
	}
	return d, nil
}

// dashQuery is one PromQL query of the dashboard and what it reads.
type dashQuery struct {
	where    string // for messages: `panel "Backlog" (row "…") query A`, `variable "job"`
	row      string // the row the panel sits in
	variable string // the template variable's name, for a variable's query
	expr     string
	refs     promqlRefs
}

// dashboardQueries collects every query of every panel (rows' nested panels
// included) and of every query variable, each parsed; the problems say what
// stops the dashboard from working anywhere: no panels, a panel without a
// query, a query that does not parse, a fixed datasource, a repeated id.
func dashboardQueries(d grafanaDashboard) ([]dashQuery, []string) {
	var queries []dashQuery
	var problems []string
	if len(d.Panels) == 0 {
		return nil, []string{"the dashboard has no panels"}
	}
	ids := map[int]string{}
	withQuery := 0
	var panel func(p grafanaPanel, row string)
	panel = func(p grafanaPanel, row string) {
		where := fmt.Sprintf("panel %q", p.Title)
		if row != "" {
			where += fmt.Sprintf(" (row %q)", row)
		}
		if other, ok := ids[p.ID]; ok {
			problems = append(problems, fmt.Sprintf("panels %q and %q share the id %d", other, p.Title, p.ID))
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			problems = append(problems, where+" is a row inside a row")
			return
		}
		if len(p.Targets) == 0 {
			problems = append(problems, where+" has no query")
			return
		}
		if msg := datasourceProblem(p.Datasource, false); msg != "" {
			problems = append(problems, where+": "+msg)
		}
		withQuery++
		for _, tg := range p.Targets {
			w := where + " query " + tg.RefID
			if msg := datasourceProblem(tg.Datasource, true); msg != "" {
				problems = append(problems, w+": "+msg)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				problems = append(problems, w+" has no expr")
				continue
			}
			refs, err := parsePromQL(tg.Expr)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", w, err))
				continue
			}
			if len(refs.metrics) == 0 {
				problems = append(problems, fmt.Sprintf("%s reads no metric: %s", w, tg.Expr))
				continue
			}
			queries = append(queries, dashQuery{where: w, row: row, expr: tg.Expr, refs: refs})
		}
	}
	row := ""
	for _, p := range d.Panels {
		if p.Type != "row" {
			panel(p, row)
			continue
		}
		row = p.Title
		if other, ok := ids[p.ID]; ok {
			problems = append(problems, fmt.Sprintf("panels %q and %q share the id %d", other, p.Title, p.ID))
		}
		ids[p.ID] = p.Title
		for _, n := range p.Panels { // a collapsed row holds its panels
			panel(n, row)
		}
	}
	if withQuery == 0 {
		problems = append(problems, "the dashboard has no panel with a query")
	}

	hasDS := false
	for _, v := range d.Templating.List {
		where := fmt.Sprintf("variable %q", v.Name)
		switch v.Type {
		case "datasource":
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil || q != "prometheus" {
				problems = append(problems, fmt.Sprintf("%s: query %s, want \"prometheus\"", where, v.Query))
			}
			hasDS = hasDS || "${"+v.Name+"}" == grafanaDatasource
		case "query":
			if msg := datasourceProblem(v.Datasource, false); msg != "" {
				problems = append(problems, where+": "+msg)
			}
			q, err := variableQuery(v.Query)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			refs, err := parseVariableQuery(q)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			queries = append(queries, dashQuery{where: where, variable: v.Name, expr: q, refs: refs})
		}
	}
	if !hasDS {
		problems = append(problems, "no datasource variable "+strings.Trim(grafanaDatasource, "${}")+" of type prometheus: the dashboard would import only where its datasource's uid matches")
	}
	return queries, problems
}

// datasourceProblem says what is wrong with a datasource reference: it must
// be the dashboard's variable. A target may leave it out (the panel's
// applies).
func datasourceProblem(raw json.RawMessage, optional bool) string {
	if len(raw) == 0 || string(raw) == "null" {
		if optional {
			return ""
		}
		return "no datasource (it would use the Grafana default): want uid " + grafanaDatasource
	}
	var ds struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	if err := json.Unmarshal(raw, &ds); err != nil {
		return fmt.Sprintf("datasource %s: want {\"type\": \"prometheus\", \"uid\": %q}", raw, grafanaDatasource)
	}
	if ds.Type != "prometheus" || ds.UID != grafanaDatasource {
		return fmt.Sprintf("names datasource uid %q (type %q): want uid %q of type prometheus", ds.UID, ds.Type, grafanaDatasource)
	}
	return ""
}

// variableQuery is a query variable's query, a string or (Grafana 10+) an
// object holding it.
func variableQuery(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Query == "" {
		return "", fmt.Errorf("query %s: want a string or {\"query\": …}", raw)
	}
	return o.Query, nil
}

var (
	labelValuesRe = regexp.MustCompile(`^\s*label_values\(\s*(.+)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)
	queryResultRe = regexp.MustCompile(`^\s*query_result\((.+)\)\s*$`)
)

// parseVariableQuery reads Grafana's Prometheus variable queries:
// label_values(SELECTOR, LABEL), whose label the selector's metric must
// carry, and query_result(EXPR).
func parseVariableQuery(q string) (promqlRefs, error) {
	if m := labelValuesRe.FindStringSubmatch(q); m != nil {
		r, err := parsePromQL(m[1])
		if err != nil {
			return r, err
		}
		r.grouping = append(r.grouping, m[2])
		return r, nil
	}
	if m := queryResultRe.FindStringSubmatch(q); m != nil {
		return parsePromQL(m[1])
	}
	return promqlRefs{}, fmt.Errorf("query %q: the check reads label_values(METRIC…, LABEL) and query_result(EXPR) only", q)
}

// promqlRefs is what a PromQL expression reads.
type promqlRefs struct {
	metrics  []string            // metric names, in order of first use
	matchers map[string][]string // by metric, the labels its selectors match on
	grouping []string            // labels of by, without, on, ignoring, group_left, group_right
}

// PromQL's words that are not metric names (matched lower-cased, as the
// PromQL lexer does), and its functions (case-sensitive).
var (
	promqlKeywords    = setOf("and", "or", "unless", "atan2", "bool", "offset", "inf", "nan")
	promqlGrouping    = setOf("by", "without", "on", "ignoring", "group_left", "group_right")
	promqlAggregators = setOf("sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
		"count_values", "quantile", "limitk", "limit_ratio")
	promqlFunctions = setOf("abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
		"avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time",
		"days_in_month", "day_of_month", "day_of_week", "day_of_year", "deg", "delta", "deriv", "exp", "floor",
		"first_over_time", "histogram_avg", "histogram_count", "histogram_sum", "histogram_stddev", "histogram_stdvar",
		"histogram_fraction", "histogram_quantile", "double_exponential_smoothing", "holt_winters", "hour", "idelta",
		"increase", "info", "irate", "label_replace", "label_join", "last_over_time", "ln", "log10", "log2",
		"mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
		"present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin", "sinh",
		"sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
		"sum_over_time", "tan", "tanh", "time", "timestamp", "ts_of_first_over_time", "ts_of_last_over_time",
		"ts_of_max_over_time", "ts_of_min_over_time", "vector", "year",
		"start", "end") // the @ modifier's start() and end()
)

// setOf is a set of words.
func setOf(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// parsePromQL finds the metric names of a PromQL expression (Grafana's
// variables allowed) with a tokenizer: strings, numbers, durations, ranges
// and subqueries ([…]), label matchers ({…}), the label lists of by(…),
// without(…), on(…), ignoring(…), group_left(…) and group_right(…),
// keywords, aggregations and functions are not metric names; every other
// identifier is. It does not check the grammar beyond what it must read.
func parsePromQL(expr string) (promqlRefs, error) {
	p := &promqlScanner{s: expr}
	r := promqlRefs{matchers: map[string][]string{}}
	add := func(m string) {
		if !slices.Contains(r.metrics, m) {
			r.metrics = append(r.metrics, m)
		}
	}
	last := "" // the metric name just read, which a {…} right after selects on
	for {
		c := p.peek()
		if c == 0 {
			return r, nil
		}
		switch {
		case c == '"' || c == '\'' || c == '`':
			if _, err := p.str(); err != nil {
				return r, err
			}
		case c == '{':
			name, labels, err := p.matchers()
			if err != nil {
				return r, err
			}
			switch {
			case name != "" && last != "":
				return r, fmt.Errorf("%s{…__name__…} names two metrics (%s and %s)", last, last, name)
			case name == "" && last == "":
				return r, fmt.Errorf("at %d: a selector with no metric name: the check needs one", p.i)
			case name == "":
				name = last
			}
			add(name)
			r.matchers[name] = append(r.matchers[name], labels...)
		case c == '[':
			end := strings.IndexByte(p.s[p.i:], ']')
			if end < 0 {
				return r, fmt.Errorf("at %d: unterminated [", p.i)
			}
			p.i += end + 1
		case c == '$': // Grafana's $var, ${var}
			p.i++
			if p.i < len(p.s) && p.s[p.i] == '{' {
				end := strings.IndexByte(p.s[p.i:], '}')
				if end < 0 {
					return r, fmt.Errorf("at %d: unterminated ${", p.i)
				}
				p.i += end + 1
			} else {
				p.ident()
			}
		case isDigit(c) || c == '.' && p.i+1 < len(p.s) && isDigit(p.s[p.i+1]):
			p.number()
		case isIdentStart(c):
			id := p.ident()
			lower := strings.ToLower(id)
			next := p.peek()
			switch {
			case promqlKeywords[lower]:
			case promqlGrouping[lower]:
				if next == '(' {
					labels, err := p.labelList()
					if err != nil {
						return r, fmt.Errorf("%s: %w", id, err)
					}
					r.grouping = append(r.grouping, labels...)
				}
			case promqlAggregators[lower] && (next == '(' || promqlGrouping[strings.ToLower(p.peekIdent())]):
			case next == '(':
				if !promqlFunctions[id] {
					return r, fmt.Errorf("unknown function %s", id)
				}
			default:
				add(id)
				last = id
				continue
			}
		default: // operators, parentheses, commas, @
			p.i++
		}
		last = ""
	}
}

// promqlScanner reads a PromQL expression from s at i.
type promqlScanner struct {
	s string
	i int
}

// isDigit, isIdentStart and isIdent classify the bytes of PromQL names
// (the metric name alphabet: letters, digits, _ and :).
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
func isIdent(c byte) bool { return isIdentStart(c) || isDigit(c) }

// peek skips spaces and comments and returns the next byte, 0 at the end.
func (p *promqlScanner) peek() byte {
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.i++
		case c == '#':
			for p.i < len(p.s) && p.s[p.i] != '\n' {
				p.i++
			}
		default:
			return c
		}
	}
	return 0
}

// ident reads a name ([A-Za-z_:][A-Za-z0-9_:]*), "" if none starts here.
func (p *promqlScanner) ident() string {
	start := p.i
	if p.i < len(p.s) && isIdentStart(p.s[p.i]) {
		for p.i < len(p.s) && isIdent(p.s[p.i]) {
			p.i++
		}
	}
	return p.s[start:p.i]
}

// peekIdent is the identifier after the spaces ahead, not consumed.
func (p *promqlScanner) peekIdent() string {
	save := p.i
	p.peek()
	id := p.ident()
	p.i = save
	return id
}

// number reads a number or a duration: 1, 0.5, .5, 1e-3, 0x1F, 5m, 1h30m.
func (p *promqlScanner) number() {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if isIdent(c) || c == '.' {
			p.i++
			continue
		}
		if (c == '+' || c == '-') && decimalExponent(p.s[start:p.i]) {
			p.i++
			continue
		}
		return
	}
}

// decimalExponent tells whether s is a decimal number up to its exponent's
// e, where a sign may follow: 1e, 2.5E.
func decimalExponent(s string) bool {
	mantissa, ok := strings.CutSuffix(strings.ToLower(s), "e")
	return ok && mantissa != "" && strings.Trim(mantissa, "0123456789.") == ""
}

// str reads a quoted string ("…", '…' with escapes, `…` raw) and returns
// its value.
func (p *promqlScanner) str() (string, error) {
	start, q := p.i, p.s[p.i]
	var b strings.Builder
	for p.i++; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\\' && q != '`' && p.i+1 < len(p.s):
			p.i++
			if v, _, _, err := strconv.UnquoteChar(p.s[p.i:], q); err == nil {
				b.WriteRune(v)
				continue
			}
			b.WriteByte(p.s[p.i])
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("at %d: unterminated string %s", start, p.s[start:])
}

// labelName reads a label name, bare or quoted.
func (p *promqlScanner) labelName() (string, bool, error) {
	if c := p.peek(); c == '"' || c == '\'' || c == '`' {
		s, err := p.str()
		return s, true, err
	}
	name := p.ident()
	if name == "" {
		return "", false, fmt.Errorf("at %d: want a label name, found %.10q", p.i, p.s[p.i:])
	}
	return name, false, nil
}

// labelList reads (label, …).
func (p *promqlScanner) labelList() ([]string, error) {
	p.i++ // (
	var labels []string
	for {
		switch p.peek() {
		case ')':
			p.i++
			return labels, nil
		case ',':
			p.i++
			continue
		case 0:
			return nil, fmt.Errorf("unterminated (")
		}
		name, _, err := p.labelName()
		if err != nil {
			return nil, err
		}
		labels = append(labels, name)
	}
}

// matchers reads {label="v", …}: the metric it names, if any (a quoted
// name alone, or __name__="…"), and the labels it matches on.
func (p *promqlScanner) matchers() (string, []string, error) {
	start := p.i
	p.i++ // {
	name := ""
	var labels []string
	for {
		switch p.peek() {
		case '}':
			p.i++
			return name, labels, nil
		case ',':
			p.i++
			continue
		case 0:
			return "", nil, fmt.Errorf("at %d: unterminated {", start)
		}
		label, quoted, err := p.labelName()
		if err != nil {
			return "", nil, err
		}
		op := ""
		if c := p.peek(); c == '=' || c == '!' {
			op = p.s[p.i : p.i+1]
			p.i++
			if p.i < len(p.s) && (p.s[p.i] == '=' || p.s[p.i] == '~') {
				op += p.s[p.i : p.i+1]
				p.i++
			}
		}
		switch {
		case op == "" && quoted: // {"metric.name", …}
			name = label
			continue
		case op == "" || op == "!" || op == "==":
			return "", nil, fmt.Errorf("at %d: after the label %s want =, !=, =~ or !~", p.i, label)
		}
		if c := p.peek(); c != '"' && c != '\'' && c != '`' {
			return "", nil, fmt.Errorf("at %d: the label %s%s wants a quoted value", p.i, label, op)
		}
		value, err := p.str()
		if err != nil {
			return "", nil, err
		}
		if label != "__name__" {
			labels = append(labels, label)
			continue
		}
		if op != "=" {
			return "", nil, fmt.Errorf("__name__%s%q: the check cannot tell which metrics a %s matcher reads: name them", op, value, op)
		}
		name = value
	}
}

// exposition is what a /metrics answer exports.
type exposition struct {
	types  map[string]string          // family -> type, from # TYPE
	series map[string]map[string]bool // sample name -> its labels
}

// family is the family of a sample's name: a histogram's or summary's
// name_bucket, name_sum and name_count are name's.
func (e exposition) family(name string) string {
	if _, ok := e.types[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		f, ok := strings.CutSuffix(name, suffix)
		if t := e.types[f]; ok && (t == "histogram" || t == "summary") {
			return f
		}
	}
	return name
}

// scrapeMetrics reads base's /metrics in Prometheus' text format once the
// listener answers and exports every sample name in need (for up to 20 s;
// then it returns what it has, for the caller to report).
func scrapeMetrics(t *testing.T, source, base string, need ...string) exposition {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		req.Header.Set("Accept", "text/plain; version=0.0.4")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch ct := resp.Header.Get("Content-Type"); {
			case rerr != nil:
				t.Fatalf("%s /metrics: %v", source, rerr)
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("status %s: %.300s", resp.Status, body)
			case !strings.HasPrefix(ct, "text/plain"):
				t.Fatalf("%s /metrics: Content-Type %q, want Prometheus' text format", source, ct)
			default:
				e, perr := parseExposition(string(body))
				if perr != nil {
					t.Fatalf("%s /metrics: %v", source, perr)
				}
				if time.Now().After(deadline) || !slices.ContainsFunc(need, func(m string) bool { return e.series[m] == nil }) {
					return e
				}
				err = fmt.Errorf("no %s yet", strings.Join(need, ", "))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s /metrics (%s): %v", source, base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parseExposition reads Prometheus' text format (expfmt, the format's own
// parser): each family's type, and each sample name with its labels (a
// histogram's as name_bucket with le, name_sum and name_count).
func parseExposition(body string) (exposition, error) {
	e := exposition{types: map[string]string{}, series: map[string]map[string]bool{}}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return e, err
	}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		set := e.series[name]
		if set == nil {
			set = map[string]bool{}
			e.series[name] = set
		}
		for _, l := range labels {
			set[l.GetName()] = true
		}
		for _, l := range extra {
			set[l] = true
		}
	}
	for name, mf := range families {
		e.types[name] = strings.ToLower(mf.GetType().String())
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				add(name+"_bucket", m.GetLabel(), "le")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			case dto.MetricType_SUMMARY:
				add(name, m.GetLabel(), "quantile")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			default:
				add(name, m.GetLabel())
			}
		}
	}
	if len(e.series) == 0 {
		return e, errors.New("no samples")
	}
	return e, nil
}

// targetLabels are the labels Prometheus adds at the scrape, not on /metrics.
var targetLabels = setOf("job", "instance")

// checkExported lists, for each query, each metric it reads that e does not
// export, each label its selectors match on that the metric does not carry,
// and each grouping label that none of its metrics carries (when all of
// them are exported: a missing metric says enough).
func checkExported(queries []dashQuery, e exposition, source string) []string {
	var problems []string
	for _, q := range queries {
		missing := false
		for _, m := range q.refs.metrics {
			labels, ok := e.series[m]
			if !ok {
				missing = true
				problems = append(problems, fmt.Sprintf("%s uses %s, which %s's /metrics does not export (it exports, of %s*: %s)\n\t%s",
					q.where, m, source, prefixOf(m), strings.Join(e.familiesWithPrefix(prefixOf(m)), " "), q.expr))
				continue
			}
			for _, l := range q.refs.matchers[m] {
				if !labels[l] && !targetLabels[l] {
					problems = append(problems, fmt.Sprintf("%s matches %s on the label %q, which %s's %s does not carry (it has %s)\n\t%s",
						q.where, m, l, source, m, strings.Join(slices.Sorted(maps.Keys(labels)), ", "), q.expr))
				}
			}
		}
		for _, l := range q.refs.grouping {
			if missing || targetLabels[l] || slices.ContainsFunc(q.refs.metrics, func(m string) bool { return e.series[m][l] }) {
				continue
			}
			problems = append(problems, fmt.Sprintf("%s groups by the label %q, which none of %s carries on %s's /metrics\n\t%s",
				q.where, l, strings.Join(q.refs.metrics, ", "), source, q.expr))
		}
	}
	return problems
}

// prefixOf is a metric name's first word with its underscore: s3fleet_.
func prefixOf(name string) string {
	if i := strings.IndexByte(name, '_'); i > 0 {
		return name[:i+1]
	}
	return name
}

// familiesWithPrefix lists the exported families whose names start with
// prefix, for a message that suggests what a query may have meant.
func (e exposition) familiesWithPrefix(prefix string) []string {
	var out []string
	for name := range e.series {
		if f := e.family(name); strings.HasPrefix(f, prefix) && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return []string{"nothing"}
	}
	return out
}
