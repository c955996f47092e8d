package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/canal-rt/canal/bench/internal/result"
)

func TestWithinTolerance(t *testing.T) {
	rate := rowDef{Kind: higher}
	latency := rowDef{Kind: lower}
	loss := rowDef{Kind: exact, Better: lower}
	held := rowDef{Kind: exact, Better: higher}
	for _, tc := range []struct {
		name       string
		d          rowDef
		canal, bin float64
		want       bool
	}{
		{"rate equal", rate, 1000, 1000, true},
		{"rate 5 % lower", rate, 1000, 950, true},
		{"rate 6 % lower", rate, 1000, 940, false},
		{"rate higher", rate, 1000, 2000, true},
		{"latency 5 % higher", latency, 10, 10.5, true},
		{"latency 6 % higher", latency, 10, 10.6, false},
		{"latency lower", latency, 10, 1, true},
		{"no loss either", loss, 0, 0, true},
		{"loss where Canal lost none", loss, 0, 1, false},
		{"all held", held, 100, 100, true},
		{"95 held of 100", held, 100, 95, true},
		{"none held", held, 100, 0, false},
	} {
		if got := withinTolerance(tc.d, tc.canal, tc.bin); got != tc.want {
			t.Errorf("%s: withinTolerance(%v, %v) = %v, want %v", tc.name, tc.canal, tc.bin, got, tc.want)
		}
	}
}

// cannedRun writes a results directory with meta.json and one run of W1, W2 (N=50) and
// W4 cells for servers, as bench/run.sh does, and returns it.
func cannedRun(t *testing.T, servers []string, extraMeta map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "cells"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := map[string]any{"mode": "full", "runs": 1, "command": "bench/run.sh (canned)", "canal_layer": "redis",
		"servers": servers, "workloads": []string{"w1", "w2", "w4"}, "w2_sizes": []int{50}, "w3_sizes": []int{}, "params": "canned"}
	for k, v := range extraMeta {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	cpu := []result.Proc{{Role: "server", Core: "0", Util: 0.9}, {Role: "loadgen", Core: "1", Util: 0.4}}
	// Canal's figures, and canal-bin's: 4 % fewer handshakes/s (within 5 %), a p99
	// 10 % higher (not within), 20 % fewer deliveries/s (not within), no loss.
	// Per second of server CPU: Canal 1.625× the baseline, canal-bin within 5 %.
	figures := map[string]struct{ hs, hsCore, hsP99, dps, p99 float64 }{
		result.Canal:    {1000, 1300, 10, 100000, 2},
		result.CanalBin: {960, 1250, 11, 80000, 2},
		result.Baseline: {800, 800, 12, 90000, 3},
		result.Floor:    {1500, 1600, 8, 0, 0},
	}
	for _, s := range servers {
		f := figures[s]
		cells := []*result.Cell{
			{Run: 1, Server: s, Workload: "w1", Phases: []result.Phase{{Name: "handshake", Metrics: map[string]float64{"handshakes_per_s": f.hs, "handshakes_per_server_cpu_s": f.hsCore, "p99_ms": f.hsP99}, CPU: cpu}}},
			{Run: 1, Server: s, Workload: "w2", Param: 50, Phases: []result.Phase{
				{Name: "burst", Metrics: map[string]float64{"deliveries_per_s": f.dps, "p50_ms": 1, "p99_ms": f.p99, "loss": 0}, CPU: cpu},
				{Name: "paced", Metrics: map[string]float64{"p50_ms": 1, "p99_ms": f.p99, "loss": 0}, CPU: cpu}}},
			{Run: 1, Server: s, Workload: "w4", Phases: []result.Phase{{Name: "echo", Metrics: map[string]float64{"round_trips_per_s": 5000, "p99_ms": 1}, CPU: cpu}}},
		}
		if s == result.CanalBin {
			cells[2] = &result.Cell{Run: 1, Server: s, Workload: "w4", NA: result.NoEcho}
		}
		if s == result.Floor {
			cells[1] = &result.Cell{Run: 1, Server: s, Workload: "w2", Param: 50, NA: result.W1Only}
			cells[2] = &result.Cell{Run: 1, Server: s, Workload: "w4", NA: result.W1Only}
		}
		for _, c := range cells {
			name := "r1-" + c.Workload + "-" + s + ".json"
			if c.Param > 0 {
				name = "r1-" + c.Workload + "-50-" + s + ".json"
			}
			if err := result.Write(filepath.Join(dir, "cells", name), c); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func readRun(t *testing.T, dir string) (summary, string, string) {
	t.Helper()
	if err := run(dir, ""); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	return sum, string(raw), string(md)
}

// TestCanalBinColumn checks canal-bin's column, ratio to Canal and within-5 % check
// on canned cells, and that W4 shows it as n/a rather than a failure.
func TestCanalBinColumn(t *testing.T) {
	dir := cannedRun(t, []string{result.Baseline, result.CanalBin, result.Canal}, map[string]any{"canal_bin_ping": "10s"})
	sum, _, md := readRun(t, dir)
	if want := "canal canal-bin baseline"; strings.Join(sum.Servers, " ") != want {
		t.Errorf("columns %v, want %s", sum.Servers, want)
	}
	type want struct {
		ratio  float64 // 0: none
		within string  // ✓, ✗ or n/a
	}
	wants := map[string]want{
		"w1.rate":          {0.96, "✓"},
		"w1.percore":       {1250.0 / 1300, "✓"},
		"w1.p99":           {10.0 / 11, "✗"},
		"w2.50.burst.rate": {0.8, "✗"},
		"w2.50.burst.p99":  {1, "✓"},
		"w2.50.burst.loss": {0, "✓"},
		"w2.50.paced.loss": {0, "✓"},
		"w4.rate":          {0, "n/a"},
		"w4.p99":           {0, "n/a"},
		"w2.50.paced.p99":  {1, "✓"},
		"w2.50.burst.p50":  {1, "✓"},
		"w2.50.paced.p50":  {1, "✓"},
	}
	for _, r := range sum.Rows {
		w, ok := wants[r.Key]
		if !ok {
			t.Errorf("unexpected row %s", r.Key)
			continue
		}
		delete(wants, r.Key)
		switch {
		case w.ratio == 0 && r.RatioBin != nil:
			t.Errorf("%s: ratio %v, want none", r.Key, *r.RatioBin)
		case w.ratio != 0 && (r.RatioBin == nil || *r.RatioBin < w.ratio-1e-9 || *r.RatioBin > w.ratio+1e-9):
			t.Errorf("%s: ratio %v, want %v", r.Key, r.RatioBin, w.ratio)
		}
		if got := withinCell(r); got != w.within {
			t.Errorf("%s: within 5 %% %q, want %q", r.Key, got, w.within)
		}
		line := "| " + r.Label + " |"
		if !strings.Contains(md, line) {
			t.Errorf("report.md has no row %q", line)
		}
	}
	for k := range wants {
		t.Errorf("row %s missing", k)
	}
	mustContain(t, md,
		"| Metric | Canal | canal-bin | Baseline | Canal vs Channels core | Canal vs baseline | canal-bin vs Canal | canal-bin within 5 % | Target | Met |",
		"| W1 handshakes/s (fresh ticket each) | 1,000 | 960 | 800 | — | 1.25× | 0.96× | ✓ |",
		"| W4 echo round trips/s | 5,000 | "+result.NoEcho+" | 5,000 | — | 1.00× | — | n/a |",
		"its ping interval: 10s",
	)
}

// mustContain reports each line report.md lacks.
func mustContain(t *testing.T, md string, lines ...string) {
	t.Helper()
	for _, s := range lines {
		if !strings.Contains(md, s) {
			t.Errorf("report.md lacks %q:\n%s", s, md)
		}
	}
}

// TestWithoutCanalBin checks that a run without canal-bin gets the table it got
// before canal-bin existed: the same header, no canal-bin fields in summary.json.
func TestWithoutCanalBin(t *testing.T) {
	dir := cannedRun(t, []string{result.Canal, result.Baseline}, nil)
	sum, raw, md := readRun(t, dir)
	if len(sum.Rows) != 12 {
		t.Errorf("%d rows, want 12", len(sum.Rows))
	}
	header := "| Metric | Canal | Baseline | Canal vs Channels core | Canal vs baseline | Target | Met |\n|---|---:|---:|---:|---:|---|:-:|\n"
	if !strings.Contains(md, header) {
		t.Errorf("report.md lacks the header %q:\n%s", header, md)
	}
	for _, s := range []string{"canal-bin", "within 5"} {
		if strings.Contains(md, s) || strings.Contains(raw, s) {
			t.Errorf("a run without canal-bin mentions %q", s)
		}
	}
	if !strings.Contains(md, "| W1 handshakes/s (fresh ticket each) | 1,000 | 800 | — | 1.25× | ≥ 8× Channels core, ≥ baseline | ? |") {
		t.Errorf("report.md's W1 row changed:\n%s", md)
	}
	if !strings.Contains(md, "| W1 handshakes per second of server CPU (per core) | 1,300 | 800 | — | 1.62× | ≥ 1.5× baseline | ✓ |") {
		t.Errorf("report.md lacks the per-core W1 row, or its check:\n%s", md)
	}
}

// TestFloorColumn: the floor server has a W1 column, n/a elsewhere, takes no part in
// the ratios or checks, and the report says what it is.
func TestFloorColumn(t *testing.T) {
	dir := cannedRun(t, []string{result.Canal, result.Baseline, result.Floor}, nil)
	_, _, md := readRun(t, dir)
	mustContain(t, md,
		"| Metric | Canal | Baseline | Floor (W1 only) | Canal vs Channels core | Canal vs baseline | Target | Met |",
		"| W1 handshakes per second of server CPU (per core) | 1,300 | 800 | 1,600 | — | 1.62× | ≥ 1.5× baseline | ✓ |",
		"| W4 echo round trips/s | 5,000 | 5,000 | "+result.W1Only+" | — | 1.00× |",
		"Floor is [bench/servers/floor]",
	)
}
