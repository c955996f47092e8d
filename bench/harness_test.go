// Package bench holds the benchmark harness (see README.md); this test keeps it from
// rotting: it runs the one command in smoke mode against real processes (redis-server,
// Canal, Daphne with both channels_redis backends, the baseline) and checks that the
// report has every row, with numbers for every server.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canal-rt/canal/bench/internal/result"
	"github.com/canal-rt/canal/bench/internal/stressreport"
)

// smokeBudget bounds the measured part of the smoke run (the cells, not the build):
// the harness must stay quick enough to run in CI.
const smokeBudget = 2 * time.Minute

type summary struct {
	Mode       string   `json:"mode"`
	CanalLayer string   `json:"canal_layer"`
	Servers    []string `json:"servers"`
	Rows       []struct {
		Key     string              `json:"key"`
		Label   string              `json:"label"`
		Values  map[string]*float64 `json:"values"`
		Display map[string]string   `json:"display"`
	} `json:"rows"`
}

type meta struct {
	W2Sizes []int `json:"w2_sizes"`
	W3Sizes []int `json:"w3_sizes"`
}

func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every server in turn for about a minute; skipped with -short")
	}
	out := t.TempDir()
	// Generous: a cold Go build cache adds about a minute to the smoke run itself.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"run.sh", "--smoke", "--out", out}
	// CANAL_BENCH_SMOKE_FLAGS adds run.sh flags, e.g. --without-redis-layer to check
	// the "n/a (Redis layer pending)" path.
	args = append(args, strings.Fields(os.Getenv("CANAL_BENCH_SMOKE_FLAGS"))...)
	cmd := exec.CommandContext(ctx, "bash", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On timeout run.sh gets SIGTERM and stops what it started (its trap); the group
	// kill below catches anything left if it cannot.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group we created; ESRCH when all gone
	}
	if err != nil {
		t.Fatalf("bench/run.sh --smoke: %v (after %v)\n%s", err, time.Since(start).Round(time.Second), tail(log.String(), 6000))
	}
	t.Logf("bench/run.sh --smoke took %v", time.Since(start).Round(time.Second))

	if m := regexp.MustCompile(`bench: cells took (\d+) s`).FindStringSubmatch(log.String()); m == nil {
		t.Errorf("run.sh did not report the time its cells took")
	} else if s, _ := strconv.Atoi(m[1]); time.Duration(s)*time.Second > smokeBudget {
		t.Errorf("smoke cells took %d s, over the %v budget", s, smokeBudget)
	}

	var sum summary
	readJSON(t, filepath.Join(out, "summary.json"), &sum)
	var mt meta
	readJSON(t, filepath.Join(out, "meta.json"), &mt)
	report, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Mode != "smoke" {
		t.Errorf("mode %q, want smoke", sum.Mode)
	}
	if fmt.Sprint(sum.Servers) != fmt.Sprint(result.Servers) {
		t.Errorf("servers %v, want %v", sum.Servers, result.Servers)
	}
	if sum.CanalLayer != "redis" && sum.CanalLayer != "pending" {
		t.Errorf("canal_layer %q, want redis or pending", sum.CanalLayer)
	}

	want := []string{"w1.rate", "w1.p99"}
	for _, n := range mt.W2Sizes {
		for _, k := range []string{"burst.rate", "burst.p50", "burst.p99", "burst.loss", "paced.p50", "paced.p99", "paced.loss"} {
			want = append(want, fmt.Sprintf("w2.%d.%s", n, k))
		}
	}
	for _, n := range mt.W3Sizes {
		want = append(want, fmt.Sprintf("w3.%d.kib", n), fmt.Sprintf("w3.%d.held", n))
	}
	want = append(want, "w4.rate", "w4.p99")
	if len(mt.W2Sizes) == 0 || len(mt.W3Sizes) == 0 {
		t.Fatalf("meta.json has no W2 or W3 sizes: %+v", mt)
	}
	got := map[string]int{}
	for i, r := range sum.Rows {
		got[r.Key] = i
	}
	for _, k := range want {
		i, ok := got[k]
		if !ok {
			t.Errorf("row %s missing from the report", k)
			continue
		}
		r := sum.Rows[i]
		if !bytes.Contains(report, []byte("| "+r.Label+" |")) {
			t.Errorf("row %q missing from report.md", r.Label)
		}
		for _, s := range result.Servers {
			v, disp := r.Values[s], r.Display[s]
			if s == result.Canal && strings.HasPrefix(k, "w2.") && sum.CanalLayer != "redis" {
				// Without the Redis layer Canal cannot hear Django's group_send: the
				// row must say so explicitly instead of showing a number.
				if v != nil || disp != result.LayerPending {
					t.Errorf("%s, canal: got %v %q, want no value and %q", k, v, disp, result.LayerPending)
				}
				continue
			}
			if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) || *v < 0 {
				t.Errorf("%s, %s: no number (shows %q)", k, s, disp)
				continue
			}
			if disp == "" || disp[0] < '0' || disp[0] > '9' {
				t.Errorf("%s, %s: display %q does not start with a number", k, s, disp)
			}
			if strings.HasSuffix(k, ".held") {
				// Every server holds this many sockets with ease: fewer means the
				// harness (workers, pings) is broken. Daphne pings on its own clock:
				// on a loaded machine (the rest of the suite runs beside this test) a
				// few of its sockets may not have seen a ping within the 2.5 s hold,
				// so the peers get a 10 % margin; the Go servers get none.
				n, _ := strconv.Atoi(strings.Split(k, ".")[1])
				want := n
				if strings.HasPrefix(s, "channels") {
					want = n * 9 / 10
				}
				if int(*v) < want || int(*v) > n {
					t.Errorf("%s, %s: %v sockets held with pings, want %d (at least %d)", k, s, *v, n, want)
				}
			}
		}
	}
	if sum.CanalLayer != "redis" && !bytes.Contains(report, []byte(result.LayerPending)) {
		t.Errorf("report.md does not say %q", result.LayerPending)
	}
	if t.Failed() {
		t.Logf("report.md:\n%s", report)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// stressCell is a canned stress cell: phases burst and paced with the given
// metrics, and for the stalled condition the final "nonreaders" phase.
func stressCell(run int, server, cond string, n int, burst, paced, end map[string]float64) *result.Cell {
	c := &result.Cell{Run: run, Server: server, Workload: "stress", Param: n, Condition: cond}
	cpu := []result.Proc{{Role: "server", Core: "0", Util: 0.5}, {Role: "loadgen", Core: "1", Util: 0.3}}
	c.Phases = append(c.Phases, result.Phase{Name: "burst", Metrics: burst, CPU: cpu}, result.Phase{Name: "paced", Metrics: paced, CPU: cpu})
	if end != nil {
		c.Phases = append(c.Phases, result.Phase{Name: "nonreaders", Metrics: end})
	}
	return c
}

func metrics(kv ...float64) map[string]float64 {
	names := []string{"loss", "closed", "p50_ms", "p99_ms", "rss_idle_mib", "rss_peak_mib", "goroutines_peak"}
	m := map[string]float64{"goroutines_idle": 1003, "others_closed": 0, "nonreaders": 0}
	for i, v := range kv {
		m[names[i]] = v
	}
	m["rss_peak_ratio"] = m["rss_peak_mib"] / m["rss_idle_mib"]
	return m
}

// TestStressReport checks the stress report (bench/internal/stressreport) on canned
// cells: medians over runs, ratios, each target's ✓/✗/?, the table and the
// BENCHMARKS.md section replaced in place. It runs nothing.
func TestStressReport(t *testing.T) {
	m := &stressreport.Meta{Mode: "full", Runs: 2, Command: "bench/run.sh --stress", Servers: []string{result.Canal, result.Baseline},
		Sizes: []int{1000}, Conditions: []string{"quiet", "busy", "stalled"}, Params: "canned", Pinned: true, CanalLayer: "redis"}
	stalledEnd := func(closed1013 float64) map[string]float64 {
		return map[string]float64{"nonreaders": 100, "nonreaders_closed": 100, "nonreaders_closed_1013": closed1013,
			"nonreaders_closed_code_1013": closed1013, "nonreaders_closed_code_1006": 100 - closed1013,
			"nonreaders_first_1013_ms": 40, "nonreaders_last_1013_ms": 90, "others_closed": 0}
	}
	var cells []*result.Cell
	for run := 1; run <= 2; run++ {
		d := float64(run) // the runs differ, so that the medians are checked
		cells = append(cells,
			// quiet: Canal meets every target; paced p99 median (12+14)/2 = 13 ms.
			stressCell(run, result.Canal, "quiet", 1000, metrics(0, 0, 20, 40, 30, 40, 1100), metrics(0, 0, 5, 10+2*d, 30, 41, 1010), nil),
			stressCell(run, result.Baseline, "quiet", 1000, metrics(0, 0, 300, 600, 50, 60, 2100), metrics(0, 0, 6, 20, 50, 61, 2010), nil),
			// busy: Canal's paced p99 (30) above the baseline's (26): ✗; RSS 2.5× idle: ✗.
			stressCell(run, result.Canal, "busy", 1000, metrics(0, 0, 20, 40, 30, 75, 1100), metrics(0, 0, 9, 30, 30, 40, 1010), nil),
			stressCell(run, result.Baseline, "busy", 1000, metrics(0, 0, 300, 600, 50, 60, 2100), metrics(0, 0, 8, 26, 50, 61, 2010), nil),
		)
		// stalled: Canal ends 100 of 100 with 1013 and loses 7 deliveries to readers in
		// the burst; the baseline ends 60 with 1013 and 40 with 1006.
		cb, cp := metrics(7, 0, 20, 40, 30, 45, 1100), metrics(0, 0, 5, 12, 30, 45, 1010)
		bb, bp := metrics(0, 0, 300, 600, 50, 60, 2100), metrics(0, 0, 6, 20, 50, 61, 2010)
		for _, x := range []map[string]float64{cb, cp, bb, bp} {
			x["nonreaders"] = 100
		}
		cells = append(cells,
			stressCell(run, result.Canal, "stalled", 1000, cb, cp, stalledEnd(100)),
			stressCell(run, result.Baseline, "stalled", 1000, bb, bp, stalledEnd(60)))
	}
	// A failed run is recorded, not counted in the medians.
	cells = append(cells, &result.Cell{Run: 3, Server: result.Baseline, Workload: "stress", Param: 1000, Condition: "quiet", Error: "canned failure"})

	sum := stressreport.Build(m, cells)
	if len(sum.Rows) != 6 {
		t.Fatalf("%d rows, want 6 (1 size × 2 phases × 3 conditions)", len(sum.Rows))
	}
	row := map[string]*stressreport.Row{}
	for i := range sum.Rows {
		row[sum.Rows[i].Key] = &sum.Rows[i]
	}
	met := func(key, target string) string {
		t.Helper()
		r := row[key]
		if r == nil {
			t.Fatalf("row %s missing", key)
		}
		for _, tg := range r.Targets {
			if tg.Name == target {
				switch {
				case tg.Met == nil:
					return "?"
				case *tg.Met:
					return "✓"
				}
				return "✗"
			}
		}
		return "absent"
	}
	q := row["stress.1000.paced.quiet"]
	if v := q.Values["p99_ms"][result.Canal]; v != 13 {
		t.Errorf("quiet paced Canal p99 median %v, want 13", v)
	}
	if q.RatioP99 == nil || math.Abs(*q.RatioP99-20.0/13) > 1e-9 {
		t.Errorf("quiet paced p99 ratio %v, want 20/13", q.RatioP99)
	}
	if !q.Partial {
		t.Errorf("quiet paced: the failed baseline run is not flagged")
	}
	for _, c := range []struct{ key, target, want string }{
		{"stress.1000.paced.quiet", "p99 ≤ 25 ms", "✓"},
		{"stress.1000.paced.quiet", "0 lost", "✓"},
		{"stress.1000.burst.quiet", "p99 ≤ 25 ms", "absent"}, // paced only
		{"stress.1000.paced.busy", "p99 ≤ baseline's", "✗"},
		{"stress.1000.burst.busy", "peak RSS ≤ 2× idle", "✗"},
		{"stress.1000.paced.busy", "peak RSS ≤ 2× idle", "✓"},
		{"stress.1000.burst.stalled", "0 lost", "✗"},
		{"stress.1000.burst.stalled", "non-readers ended with 1013", "✓"},
		{"stress.1000.paced.stalled", "no reader ended", "✓"},
	} {
		if got := met(c.key, c.target); got != c.want {
			t.Errorf("%s, target %q: %s, want %s", c.key, c.target, got, c.want)
		}
	}
	if r := row["stress.1000.paced.quiet"]; r.Met == nil || !*r.Met {
		t.Errorf("quiet paced row: Met %v, want ✓", r.Met)
	}
	if r := row["stress.1000.burst.stalled"]; r.Met == nil || *r.Met {
		t.Errorf("stalled burst row: Met %v, want ✗", r.Met)
	}

	text := stressreport.Render(m, sum, cells)
	for _, want := range []string{
		stressreport.Begin, stressreport.End, "| 1,000 | paced | quiet | 0 / 0 * | 5.00 / 6.00 * | 13.0 / 20.0 * |", // * the failed run
		"100 of 100 / 60 of 100", "| 1,000 | Baseline | 100 | 100 | 1006: 40, 1013: 60 | 40 / 90 |", "canned failure",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", text)
	}

	// BENCHMARKS.md: the section is appended once, then replaced in place.
	doc := "# Benchmarks\n\n## Benchmark: medians of 3 runs\n\n| a | b |\n"
	once := stressreport.Replace(doc, text)
	if !strings.HasPrefix(once, doc) || !strings.Contains(once, text) {
		t.Fatalf("appending the section changed the rest:\n%s", once)
	}
	again := stressreport.Replace(once+"\n## After\n", strings.Replace(text, "canned failure", "second run", 1))
	if strings.Count(again, stressreport.Begin) != 1 || strings.Contains(again, "canned failure") ||
		!strings.Contains(again, "second run") || !strings.HasPrefix(again, doc) || !strings.HasSuffix(again, "\n## After\n") {
		t.Fatalf("replacing the section in place went wrong:\n%s", again)
	}
	if got := stressreport.Extract(again); !strings.Contains(got, "second run") || !strings.HasPrefix(got, stressreport.Begin) {
		t.Errorf("Extract: %q", got)
	}
}
