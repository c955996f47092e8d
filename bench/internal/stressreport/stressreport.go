// Package stressreport turns the stress mode's cells (bench/run.sh --stress) into the
// "Stress" section of the benchmark report: per size, phase (burst, paced) and
// condition (quiet, busy, stalled), each server's loss over the reading clients,
// latency, peak and idle RSS, peak goroutines and the non-readers the server ended,
// Canal's ratios to the baseline and its targets. bench/cmd/report calls it; it lives
// here so that bench/harness_test.go can test it on canned cells.
package stressreport

import (
	"fmt"
	"github.com/canal-rt/canal/bench/internal/format"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/canal-rt/canal/bench/internal/result"
)

// Begin and End mark the section in BENCHMARKS.md; a stress run replaces what lies
// between them (inclusive) and leaves the rest of the file alone.
const (
	Begin = "<!-- stress:begin -->"
	End   = "<!-- stress:end -->"
)

// Meta is what the section's header needs from the run's meta.json.
type Meta struct {
	Mode       string // full or smoke
	Runs       int
	Command    string
	Date       string
	Commit     string
	Machine    string
	Pinned     bool
	CanalLayer string
	Servers    []string // in column order
	Sizes      []int
	Conditions []string
	Params     string
}

// Metrics shown per row; each value is the format.Median over the runs.
var Metrics = []string{
	"loss", "expected", "closed", "p50_ms", "p99_ms", "rss_idle_mib", "rss_peak_mib", "rss_peak_ratio",
	"goroutines_idle", "goroutines_peak", "nonreaders", "nonreaders_closed", "nonreaders_closed_1013",
	"nonreaders_first_1013_ms", "nonreaders_last_1013_ms", "others_closed",
}

// Target is one of Canal's targets for a row; Met is nil when a value it needs is missing.
type Target struct {
	Name string `json:"name"`
	Met  *bool  `json:"met"`
}

// Row is one size × phase × condition.
type Row struct {
	Key       string `json:"key"` // stress.<N>.<phase>.<condition>
	N         int    `json:"n"`
	Phase     string `json:"phase"`
	Condition string `json:"condition"`
	// Values[metric][server] is the format.Median over the runs that measured it.
	Values map[string]map[string]float64 `json:"values"`
	// Status[server] is "" (measured), "n/a …", "error" or "missing".
	Status map[string]string `json:"status"`
	// Codes[server] lists the close codes the server ended non-readers with (last run).
	Codes         map[string]string `json:"nonreader_codes,omitempty"`
	RatioP99      *float64          `json:"p99_canal_vs_baseline"`
	RatioPeakRSS  *float64          `json:"peak_rss_canal_vs_baseline"`
	Targets       []Target          `json:"targets"`
	Met           *bool             `json:"met"`
	Partial       bool              `json:"partial"` // some runs failed
	runsMeasured  map[string]int
	runsAttempted map[string]int
}

// Summary is the stress report as data (summary.json of a stress run).
type Summary struct {
	Mode    string   `json:"mode"`
	Stress  bool     `json:"stress"`
	Servers []string `json:"servers"`
	Rows    []Row    `json:"rows"`
}

// Phases in row order.
var Phases = []string{"burst", "paced"}

// Build computes the rows from the cells (any workload; only "stress" ones are read).
func Build(m *Meta, cells []*result.Cell) *Summary {
	sum := &Summary{Mode: m.Mode, Stress: true, Servers: m.Servers}
	type key struct {
		server, cond string
		n            int
	}
	by := map[key][]*result.Cell{}
	for _, c := range cells {
		if c.Workload == "stress" {
			k := key{c.Server, c.Condition, c.Param}
			by[k] = append(by[k], c)
		}
	}
	for _, cs := range by {
		sort.Slice(cs, func(i, j int) bool { return cs[i].Run < cs[j].Run })
	}
	for _, n := range m.Sizes {
		for _, ph := range Phases {
			for _, cond := range m.Conditions {
				r := Row{Key: fmt.Sprintf("stress.%d.%s.%s", n, ph, cond), N: n, Phase: ph, Condition: cond,
					Values: map[string]map[string]float64{}, Status: map[string]string{}, Codes: map[string]string{},
					runsMeasured: map[string]int{}, runsAttempted: map[string]int{}}
				for _, s := range m.Servers {
					cs := by[key{s, cond, n}]
					vals := map[string][]float64{}
					status := "missing"
					for _, c := range cs {
						r.runsAttempted[s]++
						switch {
						case c.NA != "":
							status = c.NA
							continue
						case c.Error != "":
							if status == "missing" {
								status = "error"
							}
							r.Partial = true
							continue
						}
						p := c.Phase(ph)
						if p == nil {
							r.Partial = true
							continue
						}
						status = ""
						r.runsMeasured[s]++
						end := c.Phase("nonreaders") // the stalled condition's final counts
						for _, k := range Metrics {
							v, ok := p.Metrics[k]
							if end != nil && strings.HasPrefix(k, "nonreaders") || end != nil && k == "others_closed" {
								v, ok = end.Metrics[k]
							}
							if ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
								vals[k] = append(vals[k], v)
							}
						}
						src := p
						if end != nil {
							src = end
						}
						r.Codes[s] = codes(src.Metrics)
					}
					r.Status[s] = status
					for k, v := range vals {
						if k == "goroutines_idle" && format.Median(v) < 0 {
							continue // the server has no /debug/stats
						}
						if r.Values[k] == nil {
							r.Values[k] = map[string]float64{}
						}
						r.Values[k][s] = format.Median(v)
					}
				}
				r.RatioP99 = ratio(r.Values["p99_ms"], true)
				r.RatioPeakRSS = ratio(r.Values["rss_peak_mib"], true)
				r.Targets = targets(&r)
				r.Met = allMet(r.Targets)
				sum.Rows = append(sum.Rows, r)
			}
		}
	}
	return sum
}

// codes lists nonreaders_closed_code_* as "1013: 5, 1006: 1".
func codes(m map[string]float64) string {
	var ks []string
	for k := range m {
		if strings.HasPrefix(k, "nonreaders_closed_code_") {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	var out []string
	for _, k := range ks {
		out = append(out, strings.TrimPrefix(k, "nonreaders_closed_code_")+": "+format.Int(m[k]))
	}
	return strings.Join(out, ", ")
}

// ratio is how many times better Canal is than the baseline; lowerBetter for
// latency and memory (baseline / Canal).
func ratio(v map[string]float64, lowerBetter bool) *float64 {
	c, ok1 := v[result.Canal]
	b, ok2 := v[result.Baseline]
	if !ok1 || !ok2 || c == 0 || b == 0 {
		return nil
	}
	r := c / b
	if lowerBetter {
		r = b / c
	}
	return &r
}

func get(r *Row, metric, server string) (float64, bool) {
	v, ok := r.Values[metric][server]
	return v, ok
}

func check(ok, met bool) *bool {
	if !ok {
		return nil
	}
	return &met
}

// targets are Canal's, from issue 9: no loss for the reading clients; peak RSS at
// most twice the idle RSS of the same sockets; paced p99 ≤ 25 ms quiet and no worse
// than the baseline's with a busy process on the core (both for N ≤ 5,000); with
// clients not reading, every one of them ended with 1013 and no reader ended.
func targets(r *Row) []Target {
	c := result.Canal
	var t []Target
	loss, ok := get(r, "loss", c)
	t = append(t, Target{"0 lost", check(ok, loss == 0)})
	ratio, ok := get(r, "rss_peak_ratio", c)
	t = append(t, Target{"peak RSS ≤ 2× idle", check(ok, ratio <= 2)})
	if r.Phase == "paced" && r.N <= 5000 {
		p99, ok := get(r, "p99_ms", c)
		switch r.Condition {
		case "quiet":
			t = append(t, Target{"p99 ≤ 25 ms", check(ok, p99 <= 25)})
		case "busy":
			b, okB := get(r, "p99_ms", result.Baseline)
			t = append(t, Target{"p99 ≤ baseline's", check(ok && okB, p99 <= b)})
		}
	}
	if r.Condition == "stalled" {
		m, ok1 := get(r, "nonreaders", c)
		k, ok2 := get(r, "nonreaders_closed_1013", c)
		t = append(t, Target{"non-readers ended with 1013", check(ok1 && ok2, m > 0 && k >= m)})
		closed, ok3 := get(r, "closed", c)
		others, ok4 := get(r, "others_closed", c)
		t = append(t, Target{"no reader ended", check(ok3 && ok4, closed == 0 && others == 0)})
	}
	return t
}

func allMet(ts []Target) *bool {
	known := true
	for _, t := range ts {
		if t.Met == nil {
			known = false
		} else if !*t.Met {
			f := false
			return &f
		}
	}
	if !known || len(ts) == 0 {
		return nil
	}
	tr := true
	return &tr
}

var titles = map[string]string{
	result.Canal:          "Canal",
	result.ChannelsCore:   "Channels (core)",
	result.ChannelsPubSub: "Channels (pubsub)",
	result.Baseline:       "Baseline",
}

var conditionTitle = map[string]string{
	"quiet":   "quiet",
	"busy":    "busy loop on the server's core",
	"stalled": "10 % not reading",
}

// Render writes the section, markers included. notes are the cells' notes and errors.
func Render(m *Meta, sum *Summary, cells []*result.Cell) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("%s\n", Begin)
	if m.Mode == "smoke" {
		w("## Stress (SMOKE MODE: tiny sizes; these numbers test the harness, they are not results)\n\n")
	} else {
		w("## Stress: W2 under load, %s side by side (%d run%s; medians)\n\n", joinTitles(m.Servers), m.Runs, plural(m.Runs))
	}
	w("- Date: %s; commit %s\n", m.Date, m.Commit)
	w("- Command: `%s`\n", m.Command)
	if m.Machine != "" {
		w("- Machine: %s\n", m.Machine)
	}
	if m.Pinned {
		w("- Pinning: each server alone on core 0 (Go servers GOMAXPROCS=1) except for the busy loop; load generator, Redis and publishers on core 1\n")
	} else {
		w("- Pinning: NONE (fewer than 2 cores or no taskset): the busy loop was not pinned either\n")
	}
	w("- Parameters: %s\n", m.Params)
	if m.CanalLayer != "" && m.CanalLayer != "redis" {
		w("- **Canal's Redis channel layer is pending**: Canal's rows say %q.\n", result.LayerPending)
	}
	w("- Each cell shows %s, in that order. Loss and latency count the reading clients only; RSS is the server's (idle: sockets open, before the first message; peak: the kernel's VmHWM over the phase); goroutines are the server's own count, its peak sampled every 10 ms.\n\n", joinTitles(m.Servers))

	w("| N | Phase | Condition | Lost (readers) | p50 (ms) | p99 (ms) | Peak RSS (MiB) | Idle RSS (MiB) | Peak / idle | Peak goroutines | Non-readers ended with 1013 | Canal vs baseline: p99, peak RSS | Targets (Canal) | Met |\n")
	w("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|:-:|\n")
	for i := range sum.Rows {
		r := &sum.Rows[i]
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			format.Int(float64(r.N)), r.Phase, conditionTitle[r.Condition],
			cells3(m, r, "loss", format.Int), cells3(m, r, "p50_ms", format.MS), cells3(m, r, "p99_ms", format.MS),
			cells3(m, r, "rss_peak_mib", fmtMiB), cells3(m, r, "rss_idle_mib", fmtMiB),
			cells3(m, r, "rss_peak_ratio", fmtX), cells3(m, r, "goroutines_peak", format.Int),
			nonReaders(m, r), fmtRatio(r.RatioP99)+", "+fmtRatio(r.RatioPeakRSS),
			targetList(r.Targets), metCell(r.Met))
	}
	w("\nRatios say how many times better Canal is than the baseline (the baseline's p99 or peak RSS divided by Canal's; above 1× Canal is ahead). “—”: not measured (Channels has no goroutine or close counts). `*`: a run failed; see the notes.\n")

	// The non-readers in detail.
	if slices.Contains(m.Conditions, "stalled") {
		w("\n### Clients not reading (stalled condition)\n\n")
		w("The server's view, at the end of the cell: the non-reading connections it ended, by close code (the baseline has no close frame to send to a full socket: its full-queue drops count as 1013, failed writes as 1006), when its 1013 closes came after the stream to them began, and the reading connections it ended (there should be none).\n\n")
		w("| N | Server | Non-readers | Ended by the server | Close codes | First / last 1013 (ms after the stream began) | Readers ended | Readers' loss: burst, paced |\n")
		w("|---:|---|---:|---:|---|---:|---:|---:|\n")
		for _, n := range m.Sizes {
			var burst, paced *Row
			for i := range sum.Rows {
				r := &sum.Rows[i]
				if r.N == n && r.Condition == "stalled" {
					if r.Phase == "burst" {
						burst = r
					} else {
						paced = r
					}
				}
			}
			if paced == nil || burst == nil {
				continue
			}
			for _, s := range m.Servers {
				if paced.Status[s] != "" {
					w("| %s | %s | %s | | | | | |\n", format.Int(float64(n)), titles[s], statusText(paced.Status[s]))
					continue
				}
				one := func(r *Row, k string, f func(float64) string) string {
					if v, ok := get(r, k, s); ok {
						return f(v)
					}
					return "—"
				}
				readersEnded := "—"
				if c, ok := get(paced, "closed", s); ok {
					readersEnded = format.Int(c)
					if o, ok := get(paced, "others_closed", s); ok {
						readersEnded = format.Int(max(c, o))
					}
				}
				w("| %s | %s | %s | %s | %s | %s / %s | %s | %s, %s |\n", format.Int(float64(n)), titles[s],
					one(paced, "nonreaders", format.Int), one(paced, "nonreaders_closed", format.Int), format.OrDash(paced.Codes[s]),
					one(paced, "nonreaders_first_1013_ms", format.Int), one(paced, "nonreaders_last_1013_ms", format.Int),
					readersEnded, one(burst, "loss", format.Int), one(paced, "loss", format.Int))
			}
		}
	}

	// CPU per cell: the server, the busy loop, core 1.
	var extra []string
	sorted := slices.Clone(cells)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Param != b.Param {
			return a.Param < b.Param
		}
		if a.Condition != b.Condition {
			return a.Condition < b.Condition
		}
		if a.Server != b.Server {
			return a.Server < b.Server
		}
		return a.Run < b.Run
	})
	w("\n### CPU per cell (100 %% = one core busy)\n\n| Cell | Server | Phase | Server (core 0) | Busy loop (core 0) | Core 1 |\n|---|---|---|---:|---:|---:|\n")
	for _, c := range sorted {
		if c.Workload != "stress" {
			continue
		}
		where := fmt.Sprintf("run %d, N=%s, %s", c.Run, format.Int(float64(c.Param)), c.Condition)
		for _, p := range c.Phases {
			if len(p.CPU) == 0 {
				continue
			}
			w("| %s | %s | %s | %.0f %% | %.0f %% | %.0f %% |\n", where, titles[c.Server], p.Name,
				100*p.RoleUtil("server"), 100*p.RoleUtil("busy"), 100*p.CoreUtil("1"))
		}
		if c.Error != "" {
			extra = append(extra, fmt.Sprintf("- %s, %s: **error**: %s", where, c.Server, c.Error))
		}
		for _, n := range c.Notes {
			extra = append(extra, fmt.Sprintf("- %s, %s: %s", where, c.Server, n))
		}
	}
	if len(extra) > 0 {
		w("\n### Notes from the stress cells\n\n%s\n", strings.Join(extra, "\n"))
	}
	w("\n%s\n", End)
	return b.String()
}

func cells3(m *Meta, r *Row, metric string, f func(float64) string) string {
	var parts []string
	for _, s := range m.Servers {
		if st := r.Status[s]; st != "" {
			parts = append(parts, statusText(st))
			continue
		}
		v, ok := r.Values[metric][s]
		if !ok {
			parts = append(parts, "—")
			continue
		}
		d := f(v)
		if r.runsMeasured[s] < r.runsAttempted[s] {
			d += " *"
		}
		parts = append(parts, d)
	}
	return strings.Join(parts, " / ")
}

func nonReaders(m *Meta, r *Row) string {
	if r.Condition != "stalled" {
		return "—"
	}
	var parts []string
	for _, s := range m.Servers {
		if st := r.Status[s]; st != "" {
			parts = append(parts, statusText(st))
			continue
		}
		k, ok1 := r.Values["nonreaders_closed_1013"][s]
		n, ok2 := r.Values["nonreaders"][s]
		if !ok1 || !ok2 {
			parts = append(parts, "—")
			continue
		}
		parts = append(parts, format.Int(k)+" of "+format.Int(n))
	}
	return strings.Join(parts, " / ")
}

func statusText(s string) string {
	switch s {
	case "error", "missing":
		return s + " *"
	}
	return s
}

func targetList(ts []Target) string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name+" "+metCell(t.Met))
	}
	return strings.Join(out, "; ")
}

func metCell(met *bool) string {
	switch {
	case met == nil:
		return "?"
	case *met:
		return "✓"
	default:
		return "✗"
	}
}

func joinTitles(servers []string) string {
	var t []string
	for _, s := range servers {
		t = append(t, titles[s])
	}
	return strings.Join(t, " / ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Replace puts section (from Render, markers included) into doc in place of the
// previous one, or appends it when doc has none; everything else is kept.
func Replace(doc, section string) string { return format.ReplaceSection(doc, Begin, End, section) }

// Extract returns doc's stress section (markers included), or "".
func Extract(doc string) string { return format.ExtractSection(doc, Begin, End) }

func fmtMiB(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func fmtX(v float64) string   { return strconv.FormatFloat(v, 'f', 2, 64) + "×" }

func fmtRatio(r *float64) string {
	if r == nil {
		return "—"
	}
	if *r >= 10 {
		return strconv.FormatFloat(*r, 'f', 0, 64) + "×"
	}
	return strconv.FormatFloat(*r, 'f', 2, 64) + "×"
}
