// Command report turns a results directory written by bench/run.sh (meta.json and
// cells/*.json) into the benchmark table: medians over runs, Canal's ratios to Channels
// (core backend) and to the bare baseline, the targets, and each cell's CPU use.
//
//	report -dir bench/results/<stamp> [-benchmarks-md BENCHMARKS.md]
//
// It prints the markdown, and writes report.md and summary.json (the same table as
// data, which bench/harness_test.go checks) into the directory.
//
// With canal-bin among the servers (the canal binary, bench/run.sh --servers
// canal,canal-bin) the table gets its column and two more: canal-bin's ratio to the
// hand-written Canal server and whether it is within 5 % of it (issue 12's target).
// Without it the table is as before.
//
// A stress run (meta.json "stress": true, bench/run.sh --stress) gets the stress
// table instead (bench/internal/stressreport); with -benchmarks-md it replaces only
// the marked "Stress" section of that file, or appends one. A full run's rewrite of
// BENCHMARKS.md keeps the Stress section that was there.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/canal-rt/canal/bench/internal/format"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/canal-rt/canal/bench/internal/result"
	"github.com/canal-rt/canal/bench/internal/stressreport"
	"github.com/canal-rt/canal/bench/internal/w5report"
)

type meta struct {
	Mode    string `json:"mode"`
	Runs    int    `json:"runs"`
	Command string `json:"command"`
	Date    string `json:"date"`
	Machine struct {
		CPU       string  `json:"cpu"`
		Cores     int     `json:"cores"`
		MemoryGiB float64 `json:"memory_gib"`
		Kernel    string  `json:"kernel"`
		OS        string  `json:"os"`
	} `json:"machine"`
	Versions    map[string]string `json:"versions"`
	Commit      string            `json:"commit"`
	Pinned      bool              `json:"pinned"`
	OpenFiles   int               `json:"open_files"`
	CanalLayer  string            `json:"canal_layer"`
	Servers     []string          `json:"servers"`
	Workloads   []string          `json:"workloads"`
	W2Sizes     []int             `json:"w2_sizes"`
	W3Sizes     []int             `json:"w3_sizes"`
	SoakS       int               `json:"soak_s"`
	SoakServers []string          `json:"soak_servers"`
	Params      string            `json:"params"`
	// The stress mode (bench/run.sh --stress).
	Stress           bool     `json:"stress"`
	StressSizes      []int    `json:"stress_sizes"`
	StressConditions []string `json:"stress_conditions"`
	StressParams     string   `json:"stress_params"`
	// The W5 mode (bench/run.sh --w5).
	W5           bool     `json:"w5"`
	W5Topologies []string `json:"w5_topologies"`
	W5Params     string   `json:"w5_params"`
	Note         string   `json:"note"`
	// CanalBinPing is canal-bin's ping interval ("" when canal-bin did not run).
	CanalBinPing string `json:"canal_bin_ping"`
}

// kind says how a metric compares.
type kind int

const (
	higher kind = iota // throughput: ratio = Canal / other
	lower              // latency, memory: ratio = other / Canal
	exact              // counts (loss, sockets held): no ratio
)

// rowDef is one line of the table.
type rowDef struct {
	Key      string
	Workload string
	Param    int
	Phase    string
	Metric   string
	Label    string
	Kind     kind
	// Better says which way an exact row's count is better (higher or lower), for
	// canal-bin's within-5 % check; rates and latencies go by Kind.
	Better kind
	Format func(float64) string
	Target string
	// Check decides the target from the medians (nil: no target). It is called only
	// when every value it needs is present.
	Check func(v map[string]float64) (met, known bool)
}

func rows(m *meta) []rowDef {
	var out []rowDef
	has := func(w string) bool { return slices.Contains(m.Workloads, w) }
	if has("w1") {
		out = append(out,
			rowDef{Key: "w1.rate", Workload: "w1", Phase: "handshake", Metric: "handshakes_per_s",
				Label: "W1 handshakes/s (fresh ticket each)", Kind: higher, Format: fmtRate,
				Target: "≥ 8× Channels core, ≥ baseline", Check: ratioCheck(8, true)},
			rowDef{Key: "w1.percore", Workload: "w1", Phase: "handshake", Metric: "handshakes_per_server_cpu_s",
				Label: "W1 handshakes per second of server CPU (per core)", Kind: higher, Format: fmtRate,
				Target: "≥ 1.5× baseline", Check: baselineRatio(1.5)},
			rowDef{Key: "w1.p99", Workload: "w1", Phase: "handshake", Metric: "p99_ms",
				Label: "W1 handshake p99 (ms)", Kind: lower, Format: format.MS})
	}
	if has("w2") {
		for _, n := range m.W2Sizes {
			p := fmt.Sprintf("N=%s", format.Int(float64(n)))
			k := fmt.Sprintf("w2.%d.", n)
			out = append(out,
				rowDef{Key: k + "burst.rate", Workload: "w2", Param: n, Phase: "burst", Metric: "deliveries_per_s",
					Label: "W2 burst " + p + ": deliveries/s", Kind: higher, Format: fmtRate,
					Target: "≥ 35× Channels core, ≥ baseline", Check: ratioCheck(35, true)},
				rowDef{Key: k + "burst.p50", Workload: "w2", Param: n, Phase: "burst", Metric: "p50_ms",
					Label: "W2 burst " + p + ": latency p50 (ms)", Kind: lower, Format: format.MS},
				rowDef{Key: k + "burst.p99", Workload: "w2", Param: n, Phase: "burst", Metric: "p99_ms",
					Label: "W2 burst " + p + ": latency p99 (ms)", Kind: lower, Format: format.MS},
				rowDef{Key: k + "burst.loss", Workload: "w2", Param: n, Phase: "burst", Metric: "loss",
					Label: "W2 burst " + p + ": lost deliveries", Kind: exact, Better: lower, Format: format.Int,
					Target: "0", Check: canalAtMost(0)},
				rowDef{Key: k + "paced.p50", Workload: "w2", Param: n, Phase: "paced", Metric: "p50_ms",
					Label: "W2 paced " + p + ": latency p50 (ms)", Kind: lower, Format: format.MS},
				rowDef{Key: k + "paced.p99", Workload: "w2", Param: n, Phase: "paced", Metric: "p99_ms",
					Label: "W2 paced " + p + ": latency p99 (ms)", Kind: lower, Format: format.MS,
					Target: "≤ 25 ms", Check: canalAtMost(25)},
				rowDef{Key: k + "paced.loss", Workload: "w2", Param: n, Phase: "paced", Metric: "loss",
					Label: "W2 paced " + p + ": lost deliveries", Kind: exact, Better: lower, Format: format.Int,
					Target: "0", Check: canalAtMost(0)},
			)
		}
	}
	if has("w3") {
		for _, n := range m.W3Sizes {
			p := fmt.Sprintf("N=%s", format.Int(float64(n)))
			k := fmt.Sprintf("w3.%d.", n)
			out = append(out,
				rowDef{Key: k + "kib", Workload: "w3", Param: n, Phase: "idle", Metric: "kib_per_socket",
					Label: "W3 " + p + ": server RSS per idle socket (KiB)", Kind: lower, Format: fmtKiB,
					Target: "≤ 12 KiB", Check: canalAtMost(12)},
				rowDef{Key: k + "held", Workload: "w3", Param: n, Phase: "idle", Metric: "held_with_pings",
					Label: "W3 " + p + ": sockets held, pings flowing", Kind: exact, Better: higher, Format: format.Int,
					Target: "all " + format.Int(float64(n)), Check: canalAtLeast(float64(n))},
			)
		}
	}
	if has("w4") {
		out = append(out,
			rowDef{Key: "w4.rate", Workload: "w4", Phase: "echo", Metric: "round_trips_per_s",
				Label: "W4 echo round trips/s", Kind: higher, Format: fmtRate,
				Target: "≥ 6× Channels core", Check: ratioCheck(6, false)},
			rowDef{Key: "w4.p99", Workload: "w4", Phase: "echo", Metric: "p99_ms",
				Label: "W4 echo p99 (ms)", Kind: lower, Format: format.MS})
	}
	if m.SoakS > 0 && len(m.W3Sizes) > 0 {
		n := slices.Max(m.W3Sizes)
		p := fmt.Sprintf("N=%s, %s", format.Int(float64(n)), fmtDuration(m.SoakS))
		out = append(out,
			rowDef{Key: "soak.growth", Workload: "soak", Param: n, Phase: "soak", Metric: "rss_growth_pct",
				Label: "Soak " + p + ": server RSS growth (%)", Kind: lower, Format: fmtPct,
				Target: "flat: ≤ 5 %", Check: canalAtMost(5)},
			rowDef{Key: "soak.held", Workload: "soak", Param: n, Phase: "soak", Metric: "held_with_pings",
				Label: "Soak " + p + ": sockets held, pings flowing", Kind: exact, Better: higher, Format: format.Int,
				Target: "all " + format.Int(float64(n)), Check: canalAtLeast(float64(n))},
		)
	}
	return out
}

func ratioCheck(vsCore float64, vsBaseline bool) func(map[string]float64) (bool, bool) {
	return func(v map[string]float64) (bool, bool) {
		c, ok := v[result.Canal]
		core, okCore := v[result.ChannelsCore]
		base, okBase := v[result.Baseline]
		if !ok || !okCore || (vsBaseline && !okBase) {
			return false, false
		}
		met := c >= vsCore*core
		if vsBaseline {
			met = met && c >= base
		}
		return met, true
	}
}

// baselineRatio: Canal at least x times the baseline.
func baselineRatio(x float64) func(map[string]float64) (bool, bool) {
	return func(v map[string]float64) (bool, bool) {
		c, ok := v[result.Canal]
		base, okBase := v[result.Baseline]
		if !ok || !okBase {
			return false, false
		}
		return c >= x*base, true
	}
}

func canalAtMost(x float64) func(map[string]float64) (bool, bool) {
	return func(v map[string]float64) (bool, bool) {
		c, ok := v[result.Canal]
		return ok && c <= x, ok
	}
}

func canalAtLeast(x float64) func(map[string]float64) (bool, bool) {
	return func(v map[string]float64) (bool, bool) {
		c, ok := v[result.Canal]
		return ok && c >= x, ok
	}
}

// binTolerance is issue 12's target for canal-bin: within 5 % of the hand-written
// Canal server in the same run.
const binTolerance = 0.05

// withinTolerance reports whether canal-bin's median bin is at most binTolerance
// worse than Canal's c: a rate (or a count that is better higher) at least 95 % of
// Canal's, a latency, memory figure or loss at most 105 % of Canal's.
func withinTolerance(d rowDef, c, bin float64) bool {
	better := d.Kind
	if better == exact {
		better = d.Better
	}
	if better == higher {
		return bin >= (1-binTolerance)*c
	}
	return bin <= (1+binTolerance)*c
}

func fmtRate(v float64) string { return format.Int(v) }

func fmtKiB(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func fmtPct(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func fmtRatio(v float64) string {
	if v >= 10 {
		return strconv.FormatFloat(v, 'f', 0, 64) + "×"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "×"
}

func fmtDuration(s int) string {
	if s%60 == 0 {
		return fmt.Sprintf("%d min", s/60)
	}
	return fmt.Sprintf("%d s", s)
}

// cellKey identifies one server's cells for one workload and size, across runs.
type cellKey struct {
	server, workload string
	param            int
}

// summary is summary.json.
type summary struct {
	Mode       string       `json:"mode"`
	CanalLayer string       `json:"canal_layer"`
	Servers    []string     `json:"servers"`
	Rows       []summaryRow `json:"rows"`
}

type summaryRow struct {
	Key     string              `json:"key"`
	Label   string              `json:"label"`
	Values  map[string]*float64 `json:"values"`  // medians; null when not measured
	Display map[string]string   `json:"display"` // what the table shows
	Runs    map[string]int      `json:"runs"`    // runs that gave a number
	// ClientBound marks cells whose core 1 (load generator, Redis, publisher) was
	// saturated: the number is a lower bound of the server's capacity.
	ClientBound   map[string]bool `json:"client_bound"`
	RatioCore     *float64        `json:"ratio_vs_channels_core"`
	RatioBaseline *float64        `json:"ratio_vs_baseline"`
	// RatioBin is canal-bin against the hand-written Canal, as the other ratios
	// (above 1× canal-bin is ahead); BinWithin says whether canal-bin is within
	// 5 % of Canal (withinTolerance), nil when either lacks a value. Both are left
	// out of summary.json when canal-bin did not run.
	RatioBin       *float64           `json:"ratio_canal_bin_vs_canal,omitempty"`
	BinWithin      *bool              `json:"canal_bin_within_5pct,omitempty"`
	Target         string             `json:"target,omitempty"`
	Met            *bool              `json:"met"`
	ServerCPU      map[string]float64 `json:"server_cpu"`
	ClientCoreUtil map[string]float64 `json:"client_core_util"`
}

// clientBoundUtil is the core-1 utilization above which a cell counts as client-bound.
const clientBoundUtil = 0.9

func main() {
	dir := flag.String("dir", "", "results directory (meta.json, cells/)")
	md := flag.String("benchmarks-md", "", "also write this BENCHMARKS.md")
	flag.Parse()
	if err := run(*dir, *md); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(dir, mdPath string) error {
	if dir == "" {
		return errors.New("-dir is required")
	}
	var m meta
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("meta.json: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "cells", "*.json"))
	if err != nil {
		return err
	}
	cells := map[cellKey][]*result.Cell{}
	for _, f := range files {
		c, err := result.Read(f)
		if err != nil {
			return err
		}
		k := cellKey{c.Server, c.Workload, c.Param}
		cells[k] = append(cells[k], c)
	}
	for _, cs := range cells {
		sort.Slice(cs, func(i, j int) bool { return cs[i].Run < cs[j].Run })
	}
	if m.Stress || m.W5 {
		var all []*result.Cell
		for _, cs := range cells {
			all = append(all, cs...)
		}
		if m.W5 {
			return runW5(dir, mdPath, &m, all)
		}
		return runStress(dir, mdPath, &m, all)
	}

	servers := orderServers(m.Servers)
	defs := rows(&m)
	sum := summary{Mode: m.Mode, CanalLayer: m.CanalLayer, Servers: servers}
	var notes []string
	noted := map[string]bool{}
	note := func(s string) {
		if !noted[s] {
			noted[s] = true
			notes = append(notes, s)
		}
	}
	for _, d := range defs {
		sr := summaryRow{Key: d.Key, Label: d.Label, Target: d.Target,
			Values: map[string]*float64{}, Display: map[string]string{}, Runs: map[string]int{},
			ClientBound: map[string]bool{}, ServerCPU: map[string]float64{}, ClientCoreUtil: map[string]float64{}}
		medians := map[string]float64{}
		for _, s := range servers {
			cs := cells[cellKey{s, d.Workload, d.Param}]
			var vals, srvU, cliU []float64
			na, errText, memory := "", "", false
			for _, c := range cs {
				switch {
				case c.NA != "":
					na = c.NA
					continue
				case c.Error != "":
					errText = c.Error
				}
				if c.Layer == "memory" {
					memory = true
				}
				ph := c.Phase(d.Phase)
				if ph == nil {
					continue
				}
				v, ok := ph.Metrics[d.Metric]
				if !ok {
					continue
				}
				if c.Error != "" && d.Kind != exact {
					continue // a failed run's rate or latency means nothing
				}
				vals = append(vals, v)
				srvU = append(srvU, ph.RoleUtil("server"))
				cliU = append(cliU, ph.CoreUtil("1"))
			}
			switch {
			case len(vals) > 0:
				med := format.Median(vals)
				medians[s] = med
				sr.Values[s] = &med
				sr.Runs[s] = len(vals)
				cu := format.Median(cliU)
				sr.ServerCPU[s], sr.ClientCoreUtil[s] = format.Median(srvU), cu
				disp := d.Format(med)
				if memory {
					disp += " †"
					note("† Canal on its in-memory channel layer: the Redis layer (layers.NewRedis) is pending, so joining the group costs Canal no Redis round trip here.")
				}
				if cu >= clientBoundUtil && d.Kind != exact {
					sr.ClientBound[s] = true
					disp += " ‡"
					note(fmt.Sprintf("‡ client-bound: core 1 (load generator, Redis, publisher) was ≥ %.0f %% busy, so the number is a lower bound of what the server can do.", 100*clientBoundUtil))
				}
				if len(vals) < len(cs) || errText != "" {
					disp += " *"
					note("* some runs failed or were incomplete; see the notes below and the cell files.")
				}
				sr.Display[s] = disp
			case na != "":
				sr.Display[s] = na
			case errText != "":
				sr.Display[s] = "error *"
				note("* some runs failed or were incomplete; see the notes below and the cell files.")
			default:
				sr.Display[s] = "—"
			}
		}
		if d.Kind != exact {
			c, okC := medians[result.Canal]
			ratio := func(other string) *float64 {
				o, ok := medians[other]
				if !okC || !ok || o == 0 || c == 0 {
					return nil
				}
				r := c / o
				if d.Kind == lower {
					r = o / c
				}
				return &r
			}
			sr.RatioCore, sr.RatioBaseline = ratio(result.ChannelsCore), ratio(result.Baseline)
			sr.RatioBin = ratioOf(d.Kind, medians[result.CanalBin], medians[result.Canal])
			if _, ok := medians[result.CanalBin]; !ok {
				sr.RatioBin = nil
			}
		}
		if c, ok := medians[result.Canal]; ok {
			if bin, ok := medians[result.CanalBin]; ok {
				w := withinTolerance(d, c, bin)
				sr.BinWithin = &w
			}
		}
		if d.Check != nil {
			if met, known := d.Check(medians); known {
				sr.Met = &met
			}
		}
		sum.Rows = append(sum.Rows, sr)
	}

	text := render(&m, &sum, defs, notes, cells, servers)
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(text), 0o644); err != nil {
		return err
	}
	sb, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(sb, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Print(text)
	if mdPath != "" {
		// Keep the Stress and W5 sections their runs wrote (they are not part of this run).
		var keep, keepW5 string
		if old, err := os.ReadFile(mdPath); err == nil {
			keep, keepW5 = stressreport.Extract(string(old)), w5report.Extract(string(old))
		}
		doc := benchmarksMD(text)
		if keep != "" {
			doc = stressreport.Replace(doc, keep)
		}
		if keepW5 != "" {
			doc = w5report.Replace(doc, keepW5)
		}
		if err := os.WriteFile(mdPath, []byte(doc), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "report: wrote %s\n", mdPath)
	}
	return nil
}

// ratioOf is how many times better a is than b: a/b for rates, b/a for latency and
// memory; nil when either is 0.
func ratioOf(k kind, a, b float64) *float64 {
	if a == 0 || b == 0 {
		return nil
	}
	r := a / b
	if k == lower {
		r = b / a
	}
	return &r
}

func orderServers(in []string) []string {
	var out []string
	for _, s := range result.Columns {
		if slices.Contains(in, s) {
			out = append(out, s)
		}
	}
	return out
}

var serverTitle = map[string]string{
	result.Canal:          "Canal",
	result.CanalBin:       "canal-bin",
	result.ChannelsCore:   "Channels (core)",
	result.ChannelsPubSub: "Channels (pubsub)",
	result.Baseline:       "Baseline",
	result.Floor:          "Floor (W1 only)",
}

func render(m *meta, sum *summary, defs []rowDef, notes []string, cells map[cellKey][]*result.Cell, servers []string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	if m.Mode == "smoke" {
		w("## Benchmark (SMOKE MODE: tiny sizes, %d run; these numbers test the harness, they are not results)\n\n", m.Runs)
	} else {
		w("## Benchmark: medians of %d runs\n\n", m.Runs)
	}
	w("- Date: %s; commit %s\n", m.Date, m.Commit)
	w("- Command: `%s`\n", m.Command)
	w("- Machine: %s, %d cores, %.0f GiB, %s, Linux %s; open-file limit %d\n",
		m.Machine.CPU, m.Machine.Cores, m.Machine.MemoryGiB, m.Machine.OS, m.Machine.Kernel, m.OpenFiles)
	v := m.Versions
	w("- Versions: %s; %s; Python %s, Django %s, channels %s, channels_redis %s, daphne %s, redis-py %s, msgpack %s; %s\n",
		v["go"], v["go_modules"], v["python"], v["django"], v["channels"], v["channels_redis"], v["daphne"], v["redis_py"], v["msgpack"], v["redis_server"])
	if m.Pinned {
		w("- Pinning: each server alone on core 0 (Go servers GOMAXPROCS=1); load generator, Redis and publisher on core 1\n")
	} else {
		w("- Pinning: NONE (fewer than 2 cores or no taskset): servers and clients shared the cores\n")
	}
	w("- Parameters: %s\n", m.Params)
	if m.CanalLayer != "redis" {
		w("- **Canal's Redis channel layer is pending**: Canal's W2 rows say %q; its other rows ran on the in-memory layer (†).\n", result.LayerPending)
	}
	w("\n")

	bin := slices.Contains(servers, result.CanalBin)
	w("| Metric |")
	for _, s := range servers {
		w(" %s |", serverTitle[s])
	}
	w(" Canal vs Channels core | Canal vs baseline |")
	if bin {
		w(" canal-bin vs Canal | canal-bin within 5 %% |")
	}
	w(" Target | Met |\n|---|")
	for range servers {
		w("---:|")
	}
	w("---:|---:|")
	if bin {
		w("---:|:-:|")
	}
	w("---|:-:|\n")
	for _, r := range sum.Rows {
		w("| %s |", r.Label)
		for _, s := range servers {
			w(" %s |", r.Display[s])
		}
		w(" %s | %s |", ratioCell(r.RatioCore), ratioCell(r.RatioBaseline))
		if bin {
			w(" %s | %s |", ratioCell(r.RatioBin), withinCell(r))
		}
		w(" %s | %s |\n", format.OrDash(r.Target), metCell(r.Met, r.Target))
	}
	w("\nRatios say how many times better Canal is: its rate divided by the other's, or the other's latency or memory divided by Canal's (above 1× Canal is ahead). Losses and sockets held are counts, with no ratio.\n")
	if bin {
		w("\n%s\n", binNote(m))
	}
	if slices.Contains(servers, result.Floor) {
		w("\nFloor is [bench/servers/floor](bench/servers/floor/main.go), W1 only: Go's net accepts, the request is read to its blank line, " +
			"101 and the greeting go out in one write, the socket is read to the client's reset and closed; no ticket, Redis, group, HTTP " +
			"library or timeout. What a server costs per handshake beyond the floor's is its own work; the floor's cost is every Go server's.\n")
	}
	if len(notes) > 0 {
		w("\n")
		for _, n := range notes {
			w("%s\n\n", n)
		}
	}

	// CPU: one line per measured phase, server (core 0) and core 1.
	w("\n### CPU use per cell (medians; 100 %% = one core busy)\n\n")
	w("Server is the server process on core 0; core 1 sums the load generator (all its processes), Redis and the publisher. A core-1 figure near 100 %% marks a client-bound cell (‡).\n\n")
	w("| Cell |")
	for _, s := range servers {
		w(" %s server / core 1 |", serverTitle[s])
	}
	w("\n|---|")
	for range servers {
		w("---:|")
	}
	w("\n")
	seen := map[string]bool{}
	for _, d := range defs {
		id := fmt.Sprintf("%s %d %s", d.Workload, d.Param, d.Phase)
		if seen[id] {
			continue
		}
		seen[id] = true
		label := strings.ToUpper(d.Workload[:1]) + d.Workload[1:]
		if d.Param > 0 {
			label += " N=" + format.Int(float64(d.Param))
		}
		label += " " + d.Phase
		w("| %s |", label)
		for _, s := range servers {
			var su, cu []float64
			for _, c := range cells[cellKey{s, d.Workload, d.Param}] {
				if ph := c.Phase(d.Phase); ph != nil && c.NA == "" {
					su = append(su, ph.RoleUtil("server"))
					cu = append(cu, ph.CoreUtil("1"))
				}
			}
			if len(su) == 0 {
				w(" — |")
				continue
			}
			w(" %.0f %% / %.0f %% |", 100*format.Median(su), 100*format.Median(cu))
		}
		w("\n")
	}

	// Errors and notes from the cells.
	var extra []string
	keys := make([]cellKey, 0, len(cells))
	for k := range cells {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.workload != b.workload {
			return a.workload < b.workload
		}
		if a.param != b.param {
			return a.param < b.param
		}
		return a.server < b.server
	})
	for _, k := range keys {
		for _, c := range cells[k] {
			where := fmt.Sprintf("run %d, %s, %s", c.Run, c.Server, c.Workload)
			if c.Param > 0 {
				where += " N=" + strconv.Itoa(c.Param)
			}
			if c.Error != "" {
				extra = append(extra, fmt.Sprintf("- %s: **error**: %s", where, c.Error))
			}
			for _, n := range c.Notes {
				extra = append(extra, fmt.Sprintf("- %s: %s", where, n))
			}
		}
	}
	if len(extra) > 0 {
		w("\n### Notes from the cells\n\n%s\n", strings.Join(extra, "\n"))
	}
	return b.String()
}

// withinCell is canal-bin's within-5 % mark: ✓ or ✗, "n/a" when canal-bin's cell
// does not apply (W4: no echo), "?" when a value is missing.
func withinCell(r summaryRow) string {
	switch {
	case r.BinWithin != nil && *r.BinWithin:
		return "✓"
	case r.BinWithin != nil:
		return "✗"
	case r.Display[result.CanalBin] == result.NoEcho:
		return "n/a"
	default:
		return "?"
	}
}

// binNote explains canal-bin's column: what it runs, how it differs from the
// benchmark's contract, and how its ratio and check read.
func binNote(m *meta) string {
	ping := m.CanalBinPing
	if ping == "" {
		ping = "unknown"
	}
	return "canal-bin is the canal binary (cmd/canal) built from the same tree, configured by " +
		"[bench/servers/canalbin/canal.toml](bench/servers/canalbin/canal.toml) (ticket by query string, group bench, " +
		"events [\"bench.message\"], the channels_redis core layer) and pinned like Canal; its ping interval: " + ping + ". " +
		"Where the binary's wire differs from the contract the load generator says so (-contract binary): no greeting, " +
		"so its W1 handshake ends at the 101 (the binary joins the group before it answers); group messages arrive as " +
		"their own JSON, {\"type\": \"bench.message\", …}; and it has no echo, so W4 does not apply (" + result.NoEcho + "). " +
		"canal-bin vs Canal is how many times better canal-bin is, as the other ratios; within 5 % means a rate or " +
		"sockets held at least 95 % of Canal's, a latency, memory figure or loss at most 105 % of Canal's (issue 12's target)."
}

func ratioCell(r *float64) string {
	if r == nil {
		return "—"
	}
	return fmtRatio(*r)
}

func metCell(met *bool, target string) string {
	switch {
	case target == "":
		return ""
	case met == nil:
		return "?"
	case *met:
		return "✓"
	default:
		return "✗"
	}
}

func benchmarksMD(report string) string {
	return `# Benchmarks

Canal against Django Channels (Daphne; channels_redis core and Pub/Sub backends) and a
bare Go server with the same behaviour, on one machine. What each workload measures, how
to run it and how to read the table: [bench/README.md](bench/README.md). Reproduce with
the command below; it rewrites this file.

` + report
}

// machine describes the machine in one line.
func (m *meta) machine() string {
	return fmt.Sprintf("%s, %d cores, %.0f GiB, %s, Linux %s; open-file limit %d",
		m.Machine.CPU, m.Machine.Cores, m.Machine.MemoryGiB, m.Machine.OS, m.Machine.Kernel, m.OpenFiles)
}

// runW5 writes a W5 run's report: report.md, summary.json and, with mdPath, the W5
// section of BENCHMARKS.md.
func runW5(dir, mdPath string, m *meta, cells []*result.Cell) error {
	sort.SliceStable(cells, func(i, j int) bool { return cells[i].Run < cells[j].Run })
	wm := &w5report.Meta{
		Mode: m.Mode, Runs: m.Runs, Command: m.Command, Date: m.Date, Commit: m.Commit,
		Machine: m.machine(), Note: m.Note, Pinned: m.Pinned, Params: m.W5Params, Topologies: m.W5Topologies,
	}
	sum := w5report.Build(wm, cells)
	text := w5report.Render(wm, sum, cells)
	return writeSection(dir, mdPath, text, sum, "W5", w5report.Replace)
}

// writeSection writes report.md and summary.json, and with mdPath puts the section
// into BENCHMARKS.md with replace, leaving the rest of the file alone.
func writeSection(dir, mdPath, text string, sum any, name string, replace func(doc, section string) string) error {
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(text), 0o644); err != nil {
		return err
	}
	sb, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(sb, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Print(text)
	if mdPath == "" {
		return nil
	}
	old, err := os.ReadFile(mdPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc := string(old)
	if doc == "" {
		doc = benchmarksMD("")
	}
	if err := os.WriteFile(mdPath, []byte(replace(doc, text)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report: wrote the %s section of %s\n", name, mdPath)
	return nil
}

// runStress writes a stress run's report: report.md, summary.json and, with mdPath,
// the Stress section of BENCHMARKS.md.
func runStress(dir, mdPath string, m *meta, cells []*result.Cell) error {
	sm := &stressreport.Meta{
		Mode: m.Mode, Runs: m.Runs, Command: m.Command, Date: m.Date, Commit: m.Commit,
		Machine: m.machine(), Pinned: m.Pinned, CanalLayer: m.CanalLayer, Servers: orderServers(m.Servers),
		Sizes: m.StressSizes, Conditions: m.StressConditions, Params: m.StressParams,
	}
	sum := stressreport.Build(sm, cells)
	text := stressreport.Render(sm, sum, cells)
	return writeSection(dir, mdPath, text, sum, "Stress", stressreport.Replace)
}
