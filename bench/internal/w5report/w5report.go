// Package w5report turns W5's cells (bench/run.sh --w5: one group_send fanned out to
// sockets split over 1, 2, 3 … Canal processes, on one Redis or a Redis Cluster, with
// the core or the Pub/Sub layer) into the "W5" section of the benchmark report: a
// table of the measured figures and a model, fitted to them, of what 1,000,000 sockets
// would need. bench/cmd/report calls it; bench/harness_test.go tests it on canned
// cells.
package w5report

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/canal-rt/canal/bench/internal/format"
	"github.com/canal-rt/canal/bench/internal/result"
)

// Begin and End mark the section in BENCHMARKS.md; a W5 run replaces what lies between
// them (inclusive) and leaves the rest of the file alone.
const (
	Begin = "<!-- w5:begin -->"
	End   = "<!-- w5:end -->"
)

// Replace puts section (from Render) into doc in place of the previous one, or
// appends it; everything else is kept.
func Replace(doc, section string) string { return format.ReplaceSection(doc, Begin, End, section) }

// Extract returns doc's W5 section (markers included), or "".
func Extract(doc string) string { return format.ExtractSection(doc, Begin, End) }

// Meta is what the section's header needs from the run's meta.json.
type Meta struct {
	Mode       string // full or smoke
	Runs       int
	Command    string
	Date       string
	Commit     string
	Machine    string
	Note       string
	Pinned     bool
	Params     string
	Topologies []string
}

// Topology titles, in the report's order.
var topologyTitle = map[string]string{
	"redis":          "one Redis, core layer",
	"pubsub":         "one Redis, Pub/Sub layer",
	"cluster":        "3-master cluster, core layer",
	"cluster-pubsub": "3-master cluster, sharded Pub/Sub",
}

var topologyOrder = []string{"redis", "pubsub", "cluster", "cluster-pubsub"}

// publisherOf says who sent group_send in a topology: Django cannot use a cluster.
func publisherOf(topo string) string {
	if strings.HasPrefix(topo, "cluster") {
		return "Canal's layer (Go)"
	}
	return "Django (channels_redis)"
}

// Metrics kept per row: each value is the format.Median over the runs.
var Metrics = []string{
	"subscribers", "messages", "loss", "deliveries_per_s", "p50_ms", "p99_ms",
	"server_us_per_delivery", "redis_cpu_us_per_msg", "redis_max_node_cpu_us_per_msg",
	"redis_calls_per_msg", "redis_max_node_calls_per_msg", "redis_cmd_us_per_msg", "redis_bytes_per_msg",
	"rss_mib_max", "rss_mib_total", "kib_per_socket", "redis_util", "server_util",
}

// Row is one topology × processes × sockets per process × phase.
type Row struct {
	Key      string             `json:"key"` // w5.<topology>.<procs>x<per>.<phase>
	Topology string             `json:"topology"`
	Procs    int                `json:"procs"`
	PerProc  int                `json:"per_proc"`
	Phase    string             `json:"phase"`
	Values   map[string]float64 `json:"values"`
	Runs     int                `json:"runs"`    // runs with this phase measured
	Partial  bool               `json:"partial"` // a run failed or lacked the phase
}

// Fit is y = A + B·processes + C·sockets, least squares over a topology's burst rows
// (with the measurements' scatter, a slope indistinguishable from 0 is left at 0).
// Separable is false when the rows do not vary processes and sockets per process
// independently: the fit then uses the one that varies and leaves the other at 0.
type Fit struct {
	A, B, C   float64
	Separable bool
	Points    int
	Dropped   []string `json:"dropped,omitempty"` // slopes ("b", "c") within the noise, set to 0
}

// At evaluates the fit.
func (f Fit) At(procs, sockets float64) float64 { return f.A + f.B*procs + f.C*sockets }

// Model is a topology's fitted costs: per message on the Redis side (all nodes, and
// the busiest node), per delivery on the servers, and memory.
type Model struct {
	Topology        string  `json:"topology"`
	RedisUS         Fit     `json:"redis_us"`          // Redis CPU µs per message, all nodes
	RedisMaxUS      Fit     `json:"redis_max_us"`      // the busiest node's
	Calls           Fit     `json:"calls"`             // Redis calls per message
	Bytes           Fit     `json:"bytes"`             // Redis network bytes (in + out) per message
	ServerUSPerDel  float64 `json:"server_us_per_del"` // server CPU µs per delivery, largest cells
	RSS             Fit     `json:"rss_mib"`           // server RSS MiB, all processes: B per process, C per socket (A = 0)
	Lossless        bool    `json:"lossless"`          // every measured phase lost nothing
	LargestSockets  int     `json:"largest_sockets"`
	LargestPerProc  int     `json:"largest_per_proc"`
	MeasuredMinProc int     `json:"measured_min_procs"`
}

// Summary is the whole W5 report, also written as summary.json.
type Summary struct {
	Mode   string  `json:"mode"`
	Rows   []Row   `json:"rows"`
	Models []Model `json:"models"`
	Errors int     `json:"errors"`
}

// Target is the model's projection size.
const Target = 1_000_000

// FDLimit is the open files one server process may hold here (the machine's limit,
// less a margin): the fewest processes that hold Target sockets.
const FDLimit = 19_000

type rowKey struct {
	topo       string
	procs, per int
	phase      string
}

// Build computes medians per row and the fits per topology.
func Build(m *Meta, cells []*result.Cell) *Summary {
	sum := &Summary{Mode: m.Mode}
	vals := map[rowKey]map[string][]float64{}
	runs := map[rowKey]int{}
	cellRuns := map[[3]any]int{} // topology, procs, per → cells (failed included)
	for _, c := range cells {
		if c.Workload != "w5" {
			continue
		}
		per := 0
		if c.Procs > 0 {
			per = c.Param / c.Procs
		}
		cellRuns[[3]any{c.Topology, c.Procs, per}]++
		if c.Error != "" {
			sum.Errors++
		}
		for i := range c.Phases {
			ph := &c.Phases[i]
			k := rowKey{c.Topology, c.Procs, per, ph.Name}
			if vals[k] == nil {
				vals[k] = map[string][]float64{}
			}
			runs[k]++
			for _, name := range Metrics {
				v, ok := ph.Metrics[name]
				switch name {
				case "redis_util":
					v, ok = ph.RoleUtil("redis"), true
				case "server_util":
					v, ok = ph.RoleUtil("server"), true
				}
				if ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
					vals[k][name] = append(vals[k][name], v)
				}
			}
		}
	}
	for k, mv := range vals {
		r := Row{Key: fmt.Sprintf("w5.%s.%dx%d.%s", k.topo, k.procs, k.per, k.phase), Topology: k.topo,
			Procs: k.procs, PerProc: k.per, Phase: k.phase, Values: map[string]float64{}, Runs: runs[k]}
		for name, v := range mv {
			r.Values[name] = format.Median(v)
		}
		r.Partial = runs[k] < cellRuns[[3]any{k.topo, k.procs, k.per}]
		sum.Rows = append(sum.Rows, r)
	}
	order := func(t string) int {
		if i := slices.Index(topologyOrder, t); i >= 0 {
			return i
		}
		return len(topologyOrder)
	}
	sort.Slice(sum.Rows, func(i, j int) bool {
		a, b := sum.Rows[i], sum.Rows[j]
		switch {
		case a.Topology != b.Topology:
			return order(a.Topology) < order(b.Topology)
		case a.PerProc != b.PerProc:
			return a.PerProc < b.PerProc
		case a.Procs != b.Procs:
			return a.Procs < b.Procs
		}
		return a.Phase < b.Phase // burst before paced
	})
	for _, t := range topologyOrder {
		if md, ok := buildModel(t, sum.Rows); ok {
			sum.Models = append(sum.Models, md)
		}
	}
	return sum
}

func buildModel(topo string, rows []Row) (Model, bool) {
	md := Model{Topology: topo, Lossless: true}
	var burst []Row
	for _, r := range rows {
		if r.Topology != topo {
			continue
		}
		if r.Values["loss"] > 0 {
			md.Lossless = false
		}
		if r.Phase == "burst" && r.Values["messages"] > 0 {
			burst = append(burst, r)
		}
	}
	if len(burst) == 0 {
		return md, false
	}
	xs := func(r Row) (float64, float64) { return float64(r.Procs), float64(r.Procs * r.PerProc) }
	fit := func(metric string, intercept bool) Fit {
		var p, s, y []float64
		for _, r := range burst {
			a, b := xs(r)
			p, s, y = append(p, a), append(s, b), append(y, r.Values[metric])
		}
		return fitLinear(p, s, y, intercept)
	}
	md.RedisUS = fit("redis_cpu_us_per_msg", true)
	md.RedisMaxUS = fit("redis_max_node_cpu_us_per_msg", true)
	md.Calls = fit("redis_calls_per_msg", true)
	md.Bytes = fit("redis_bytes_per_msg", true)
	md.RSS = fit("rss_mib_total", false)
	md.MeasuredMinProc = burst[0].Procs
	var dels []float64
	for _, r := range burst {
		md.LargestPerProc = max(md.LargestPerProc, r.PerProc)
		md.LargestSockets = max(md.LargestSockets, r.Procs*r.PerProc)
		md.MeasuredMinProc = min(md.MeasuredMinProc, r.Procs)
	}
	for _, r := range burst {
		if r.PerProc == md.LargestPerProc {
			dels = append(dels, r.Values["server_us_per_delivery"])
		}
	}
	md.ServerUSPerDel = format.Median(dels)
	return md, true
}

// fitLinear fits y = A + B·p + C·s by least squares (A fixed at 0 without intercept).
// Columns that do not vary independently are dropped: with one sockets-per-process
// size, s is a multiple of p and only p is kept (or, without intercept, only s). A
// slope smaller than twice its standard error (the measurements' scatter says it could
// be 0) is dropped too and the rest refitted, so that noise is not extrapolated to a
// million sockets; Dropped names it.
func fitLinear(p, s, y []float64, intercept bool) Fit {
	f := Fit{Points: len(y)}
	if len(y) == 0 {
		return f
	}
	distinct := func(v []float64) int {
		seen := map[float64]bool{}
		for _, x := range v {
			seen[x] = true
		}
		return len(seen)
	}
	ratio := make([]float64, len(p))
	for i := range p {
		ratio[i] = s[i] / p[i]
	}
	varyP, varyR := distinct(p) > 1, distinct(ratio) > 1
	ones := make([]float64, len(y))
	for i := range ones {
		ones[i] = 1
	}
	var cols []col
	if intercept {
		cols = append(cols, col{"a", ones, &f.A})
	}
	switch {
	case varyP && varyR:
		cols = append(cols, col{"b", p, &f.B}, col{"c", s, &f.C})
		f.Separable = true
	case intercept && varyP:
		cols = append(cols, col{"b", p, &f.B})
	case intercept && varyR:
		cols = append(cols, col{"c", s, &f.C})
	case !intercept:
		cols = append(cols, col{"c", s, &f.C})
	}
	if len(cols) > len(y) {
		cols = cols[:len(y)]
	}
	for {
		coef, se, ok := solve(cols, y)
		if !ok {
			f.Separable = false
			return f // singular: leave the fit at 0
		}
		weakest, worst := -1, 2.0
		for i, c := range cols {
			if c.name == "a" || se[i] <= 0 || len(cols) == 1 {
				continue
			}
			if t := math.Abs(coef[i]) / se[i]; t < worst {
				weakest, worst = i, t
			}
		}
		if weakest < 0 {
			for i, c := range cols {
				*c.dst = coef[i]
			}
			return f
		}
		f.Dropped = append(f.Dropped, cols[weakest].name)
		cols = append(cols[:weakest:weakest], cols[weakest+1:]...)
	}
}

// col is one regressor of fitLinear.
type col struct {
	name string
	v    []float64
	dst  *float64
}

// solve returns the least-squares coefficients of y on cols and their standard errors
// (0 when there are no spare points to estimate the scatter from), through the normal
// equations inverted by Gauss-Jordan elimination with partial pivoting.
func solve(cols []col, y []float64) (coef, se []float64, ok bool) {
	n := len(cols)
	a := make([][]float64, n) // [XᵀX | I | Xᵀy]
	for i := range a {
		a[i] = make([]float64, 2*n+1)
		for j := 0; j < n; j++ {
			for k := range y {
				a[i][j] += cols[i].v[k] * cols[j].v[k]
			}
		}
		a[i][n+i] = 1
		for k := range y {
			a[i][2*n] += cols[i].v[k] * y[k]
		}
	}
	for c := 0; c < n; c++ {
		piv := c
		for r := c + 1; r < n; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[piv][c]) {
				piv = r
			}
		}
		a[c], a[piv] = a[piv], a[c]
		if math.Abs(a[c][c]) < 1e-12 {
			return nil, nil, false
		}
		d := a[c][c]
		for j := range a[c] {
			a[c][j] /= d
		}
		for r := 0; r < n; r++ {
			if r == c {
				continue
			}
			k := a[r][c]
			for j := range a[r] {
				a[r][j] -= k * a[c][j]
			}
		}
	}
	coef, se = make([]float64, n), make([]float64, n)
	for i := range cols {
		coef[i] = a[i][2*n]
	}
	if dof := len(y) - n; dof > 0 {
		var rss float64
		for k := range y {
			r := y[k]
			for i, c := range cols {
				r -= coef[i] * c.v[k]
			}
			rss += r * r
		}
		for i := range cols {
			se[i] = math.Sqrt(rss / float64(dof) * a[i][n+i])
		}
	}
	return coef, se, true
}

// Projection is a model evaluated at Target sockets on procs processes.
type Projection struct {
	Procs         int
	RedisUS       float64 // Redis CPU µs per message, all nodes
	RedisMaxUS    float64 // the busiest node's
	MaxMsgPerS    float64 // messages/s at which the busiest node is one core busy
	Calls, Bytes  float64
	ServerCores   float64 // server cores at MaxMsgPerS
	ServerCores1  float64 // server cores at 1 message/s
	ServerMsgPerS float64 // messages/s the procs processes deliver with one core each
	RSSGiB        float64
}

// Limit is the message rate the deployment sustains: the lower of Redis's and the
// servers' (one core per process), and which one it is.
func (p Projection) Limit() (float64, string) {
	if p.MaxMsgPerS > 0 && p.MaxMsgPerS < p.ServerMsgPerS {
		return p.MaxMsgPerS, "Redis"
	}
	return p.ServerMsgPerS, "the servers"
}

// Project evaluates md at Target sockets on procs processes.
func Project(md Model, procs int) Projection {
	p, s := float64(procs), float64(Target)
	pr := Projection{Procs: procs,
		RedisUS: math.Max(md.RedisUS.At(p, s), 0), RedisMaxUS: math.Max(md.RedisMaxUS.At(p, s), 0),
		Calls: math.Max(md.Calls.At(p, s), 0), Bytes: math.Max(md.Bytes.At(p, s), 0),
		RSSGiB: math.Max(md.RSS.At(p, s), 0) / 1024}
	if pr.RedisMaxUS > 0 {
		pr.MaxMsgPerS = 1e6 / pr.RedisMaxUS
	}
	pr.ServerCores1 = s * md.ServerUSPerDel / 1e6
	pr.ServerCores = pr.ServerCores1 * pr.MaxMsgPerS
	if md.ServerUSPerDel > 0 {
		pr.ServerMsgPerS = p * 1e6 / md.ServerUSPerDel / s
	}
	return pr
}

// ProjectionProcs are the process counts the model is shown at: the fewest that hold
// Target sockets under FDLimit each, then 100 and 250.
func ProjectionProcs() []int {
	least := (Target + FDLimit - 1) / FDLimit
	out := []int{least}
	for _, n := range []int{100, 250} {
		if n > least {
			out = append(out, n)
		}
	}
	return out
}

// Render writes the section, markers included.
func Render(m *Meta, sum *Summary, cells []*result.Cell) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	w("%s\n", Begin)
	if m.Mode == "smoke" {
		w("## W5 (SMOKE MODE: tiny sizes; these numbers test the harness, they are not results)\n\n")
	} else {
		w("## W5: one group_send to sockets spread over several Canal processes (%d run%s; medians)\n\n", m.Runs, plural(m.Runs))
	}
	if m.Note != "" {
		w("**%s**\n\n", m.Note)
	}
	w("- Date: %s; commit %s\n", m.Date, m.Commit)
	w("- Command: `%s`\n", m.Command)
	if m.Machine != "" {
		w("- Machine: %s\n", m.Machine)
	}
	if m.Pinned {
		w("- Pinning: every Canal server (GOMAXPROCS=1) on core 0, sharing it; redis-server (or the cluster's 3 masters), the load generator and the publisher on core 1. With 2 cores the servers do not run in parallel: deliveries/s does not grow with processes here, and the figures are inputs of the model below (CPU per delivery, Redis work per message), not a production capacity\n")
	} else {
		w("- Pinning: NONE (fewer than 2 cores or no taskset)\n")
	}
	w("- Parameters: %s\n", m.Params)
	w("- Publisher: Django's `channel_layer.group_send` (publish.py: channels_redis core or Pub/Sub) on one Redis; on the cluster Canal's own layer in a Go process (`loadgen publish`), since channels_redis cannot use a Redis Cluster\n")
	w("- CPU: the scheduler's run time of every thread of the redis-server process(es) and of the servers (/proc/PID/task/*/sched) over the phase, per message sent (all nodes; the busiest node after the semicolon). Calls: INFO commandstats before and after (its own INFO calls left out), per message; KiB: INFO stats' network bytes in + out, per message. Server: all servers' CPU per delivery; RSS: the largest server process's after the phase\n\n")

	w("| Topology | Processes × sockets | Phase | Deliveries/s | p50 (ms) | p99 (ms) | Lost | Redis CPU µs/msg (all; busiest) | Redis calls/msg | Redis KiB/msg | Server µs/delivery | RSS per process (MiB) |\n")
	w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range sum.Rows {
		v := r.Values
		star := ""
		if r.Partial {
			star = " *"
		}
		w("| %s | %d × %s | %s | %s%s | %s | %s | %s | %s; %s | %s | %s | %s | %s |\n",
			topologyTitle[r.Topology], r.Procs, format.Int(float64(r.PerProc)), r.Phase,
			format.Int(v["deliveries_per_s"]), star, format.MS(v["p50_ms"]), format.MS(v["p99_ms"]), format.Int(v["loss"]),
			format.Int(v["redis_cpu_us_per_msg"]), format.Int(v["redis_max_node_cpu_us_per_msg"]),
			strconv.FormatFloat(v["redis_calls_per_msg"], 'f', 1, 64), kib(v["redis_bytes_per_msg"]),
			strconv.FormatFloat(v["server_us_per_delivery"], 'f', 2, 64), strconv.FormatFloat(v["rss_mib_max"], 'f', 1, 64))
	}
	w("\n`*`: a run failed or lacked the phase; see the notes. Burst: messages back to back (deliveries/s is the fan-out's throughput); paced: the steady rate (p99 is the latency to expect). Redis CPU in the paced phase includes its idle work (receive loops' blocking pops timing out, liveness keys) spread over few messages.\n\n")

	renderModel(&b, sum)

	var notes []string
	cells = slices.Clone(cells)
	sort.SliceStable(cells, func(i, j int) bool {
		a, b := cells[i], cells[j]
		switch {
		case a.Topology != b.Topology:
			return slices.Index(topologyOrder, a.Topology) < slices.Index(topologyOrder, b.Topology)
		case a.Param/max(a.Procs, 1) != b.Param/max(b.Procs, 1):
			return a.Param/max(a.Procs, 1) < b.Param/max(b.Procs, 1)
		case a.Procs != b.Procs:
			return a.Procs < b.Procs
		}
		return a.Run < b.Run
	})
	firstRun, biggest := map[string]int{}, map[string]int{}
	for _, c := range cells {
		if c.Error == "" && (firstRun[c.Topology] == 0 || c.Run < firstRun[c.Topology]) {
			firstRun[c.Topology] = c.Run
		}
		biggest[c.Topology] = max(biggest[c.Topology], c.Param)
	}
	for _, c := range cells {
		if c.Workload != "w5" {
			continue
		}
		id := fmt.Sprintf("run %d, %s, %d × %d", c.Run, c.Topology, c.Procs, c.Param/max(c.Procs, 1))
		if c.Error != "" {
			notes = append(notes, id+": error: "+c.Error)
		}
		for _, n := range c.Notes {
			// The per-command breakdown is shown for each topology's largest cell's
			// burst in its first run only; the cell files keep every one.
			if strings.Contains(n, "by command") && (!strings.HasPrefix(n, "burst:") || c.Run != firstRun[c.Topology] || c.Param != biggest[c.Topology]) {
				continue
			}
			notes = append(notes, id+": "+n)
		}
	}
	if len(notes) > 0 {
		w("\n### Notes from the cells\n\n")
		for _, n := range notes {
			w("- %s\n", n)
		}
	}
	w("%s\n", End)
	return b.String()
}

func renderModel(b *strings.Builder, sum *Summary) {
	w := func(f string, a ...any) { fmt.Fprintf(b, f, a...) }
	if len(sum.Models) == 0 {
		return
	}
	w("### Model: 1,000,000 sockets\n\n")
	w("Fitted to the burst rows above by least squares, per topology: Redis work per message = a + b·processes + c·sockets (a: the publisher's reads, b: one queue push and pop, or one Pub/Sub delivery, per process; c: what grows with the group's members, such as the member list the core layer reads and copies into every message), server RSS = processes × base + sockets × per-socket, and the servers' CPU per delivery from the largest sockets per process measured. A slope smaller than twice its standard error is set to 0 (the scatter of the measurements cannot tell it from 0) and the rest refitted. Redis runs commands on one core, so a node is the limit when its CPU per message times the message rate reaches one core. The figures extrapolate from at most %s sockets to %s: they show where the costs grow, not a capacity to plan on.\n\n",
		format.Int(float64(largest(sum))), format.Int(Target))
	w("| Topology | Redis µs/msg = a + b·P + c·S (all nodes) | busiest node | calls/msg | bytes/msg per socket | server µs/delivery | RSS MiB per process; KiB per socket | 0 loss measured |\n")
	w("|---|---|---|---|---:|---:|---|:-:|\n")
	for _, md := range sum.Models {
		sep := ""
		if !md.RedisUS.Separable {
			sep = " †"
		}
		w("| %s | %s%s | %s | %s | %s | %s | %s; %s | %s |\n", topologyTitle[md.Topology], fitText(md.RedisUS), sep, fitText(md.RedisMaxUS),
			fitText(md.Calls), strconv.FormatFloat(md.Bytes.C, 'f', 1, 64), strconv.FormatFloat(md.ServerUSPerDel, 'f', 2, 64),
			strconv.FormatFloat(md.RSS.B, 'f', 1, 64), strconv.FormatFloat(md.RSS.C*1024, 'f', 1, 64), yesNo(md.Lossless))
	}
	var sep []Model
	for _, md := range sum.Models {
		if md.RedisUS.Separable {
			sep = append(sep, md)
		}
	}
	if len(sep) < len(sum.Models) {
		w("\n† one sockets-per-process size only (or one process count): per-socket and per-process costs cannot be told apart, so the fit puts them on what varied and the topology is not projected below; run with two `--w5-per-proc` sizes.\n")
	}
	w("\n")
	if len(sep) == 0 {
		return
	}
	procs := ProjectionProcs()
	w("Projected at %s sockets (P processes; %d is the fewest under this machine's %s-file limit per process). *Max msg/s*: the rate at which the busiest Redis node is one core busy; *server cores*: what the deliveries need at that rate and, in brackets, at 1 message/s; *server-bound msg/s*: the rate P processes of one core each deliver to every socket (P / (10⁶ sockets × µs per delivery)); *limit*: the lower of the two.\n\n",
		format.Int(Target), procs[0], format.Int(FDLimit+1000))
	w("| Topology | P | Redis µs/msg (busiest node) | Max msg/s | Deliveries/s at max | Server cores at max (at 1 msg/s) | Server-bound msg/s | Limit | Redis MiB/msg | Server RSS (GiB) |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
	for _, md := range sep {
		for _, n := range procs {
			pr := Project(md, n)
			_, who := pr.Limit()
			w("| %s | %d | %s | %s | %s | %s (%s) | %s | %s | %s | %s |\n", topologyTitle[md.Topology], n, format.Int(pr.RedisMaxUS),
				rate(pr.MaxMsgPerS), format.Int(pr.MaxMsgPerS*Target), strconv.FormatFloat(pr.ServerCores, 'f', 1, 64),
				strconv.FormatFloat(pr.ServerCores1, 'f', 2, 64), rate(pr.ServerMsgPerS), who, strconv.FormatFloat(pr.Bytes/(1<<20), 'f', 2, 64),
				strconv.FormatFloat(pr.RSSGiB, 'f', 1, 64))
		}
	}
	w("\n")
	for _, line := range findings(sep, procs[0]) {
		w("- %s\n", line)
	}
}

// findings are the model's conclusions, computed from the fits.
func findings(models []Model, procs int) []string {
	by := map[string]Projection{}
	fits := map[string]Model{}
	for _, md := range models {
		by[md.Topology] = Project(md, procs)
		fits[md.Topology] = md
	}
	var out []string
	if core, ok := by["redis"]; ok {
		md := fits["redis"]
		share := 0.0
		if core.RedisUS > 0 {
			share = 100 * md.RedisUS.C * Target / core.RedisUS
		}
		lim, who := core.Limit()
		out = append(out, fmt.Sprintf("One Redis, core layer: at %s sockets on %d processes one message costs Redis %s µs and %s MiB of traffic (%.0f %% of the time grows with the sockets, c·S: the member list), so Redis saturates at %s messages/s (%s deliveries/s), where the servers need %.1f cores; the limit is %s, at %s messages/s.",
			format.Int(Target), procs, format.Int(core.RedisUS), strconv.FormatFloat(core.Bytes/(1<<20), 'f', 0, 64), share, rate(core.MaxMsgPerS), format.Int(core.MaxMsgPerS*Target), core.ServerCores, who, rate(lim)))
		if ps, ok := by["pubsub"]; ok && ps.RedisMaxUS > 0 {
			lim, who := ps.Limit()
			out = append(out, fmt.Sprintf("Pub/Sub (layers.NewRedisPubSub): one PUBLISH per message, delivered once per subscribed process, so the member list never reaches Redis: %s µs per message, %.0f× less than the core layer, which moves Redis's saturation to %s messages/s; the limit is then %s, at %s messages/s (%d processes of one core). Pub/Sub keeps nothing for a process that is not subscribed at that moment.",
				format.Int(ps.RedisUS), core.RedisUS/ps.RedisUS, rate(ps.MaxMsgPerS), who, rate(lim), procs))
		}
		if cl, ok := by["cluster"]; ok && cl.RedisMaxUS > 0 {
			out = append(out, fmt.Sprintf("Sharding (3-master cluster, core layer): the busiest master does %s µs per message against the single Redis's %s: one group's key, and so the read of its members, lives on one master, and only the per-process queue pushes spread. Sharding raises the limit for many groups (each on its own slot), not for one group of %s.",
				format.Int(cl.RedisMaxUS), format.Int(core.RedisMaxUS), format.Int(Target)))
		}
	}
	if cp, ok := by["cluster-pubsub"]; ok && cp.RedisMaxUS > 0 {
		out = append(out, fmt.Sprintf("Sharded Pub/Sub on the cluster: a group's messages go to the one master that owns its channel's slot (%s µs per message there), so, as with the core layer, one group does not spread; many groups do.",
			format.Int(cp.RedisMaxUS)))
	}
	for _, md := range models {
		if !md.Lossless {
			out = append(out, fmt.Sprintf("%s lost deliveries in a measured phase: its rows and notes say where.", topologyTitle[md.Topology]))
		}
	}
	return out
}

func largest(sum *Summary) int {
	n := 0
	for _, md := range sum.Models {
		n = max(n, md.LargestSockets)
	}
	return n
}

func fitText(f Fit) string {
	term := func(v float64, s string) string {
		if v < 0 {
			return " − " + s
		}
		return " + " + s
	}
	return num(f.A) + term(f.B, num(math.Abs(f.B))+"·P") + term(f.C, strconv.FormatFloat(math.Abs(f.C), 'g', 3, 64)+"·S")
}

func num(v float64) string {
	if math.Abs(v) >= 100 {
		return format.Int(v)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func rate(v float64) string {
	if v <= 0 {
		return "—"
	}
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return format.Int(v)
}

func kib(v float64) string { return strconv.FormatFloat(v/1024, 'f', 1, 64) }

func yesNo(b bool) string {
	if b {
		return "✓"
	}
	return "✗"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
