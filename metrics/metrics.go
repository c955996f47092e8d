package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/server"
)

// Options configure New. The zero value is ready: a registry of the Metrics' own,
// served by Handler.
type Options struct {
	// Registerer receives the metrics. Nil: a new registry, with Go's runtime and
	// process collectors (go_goroutines, process_open_fds, ...) besides Canal's;
	// never the global one. A Registerer given here gets Canal's metrics only.
	Registerer prometheus.Registerer
	// Gatherer is what Handler serves. Default: the new registry, or Registerer
	// when it is also a Gatherer (a *prometheus.Registry is). New fails when there is
	// neither.
	Gatherer prometheus.Gatherer
	// MaxRoutes bounds the distinct values of the route label (default 100). Routes
	// are patterns, not paths, so an app has few; the bound holds even when a
	// handler puts something unbounded in Scope.RoutePattern. Routes past it are
	// counted under "other".
	MaxRoutes int
	// MaxCodes bounds the distinct HTTP statuses, and separately the distinct close
	// codes, used as labels (default 64; an app's own close codes are 3000-4999).
	// Values past it are counted under "other".
	MaxCodes int
}

// ErrOptions reports invalid Options.
var ErrOptions = errors.New("metrics: invalid options")

// Metrics exports a Canal server's metrics to Prometheus. It is a server.Observer:
// set it as server.Options.Observer, then hand it the Server (and any consumers and
// Redis layers) whose counters it reads when scraped. See the package documentation
// for the metrics and their labels.
//
// Concurrency: safe for concurrent use. Observer calls take a read lock and update
// Prometheus counters; they never block on I/O.
type Metrics struct {
	gatherer prometheus.Gatherer
	routes   *bounded
	statuses *bounded
	codes    *bounded

	handshakes    *prometheus.CounterVec
	handshakeTime *prometheus.HistogramVec
	open          *prometheus.GaugeVec
	closes        *prometheus.CounterVec
	lifetime      *prometheus.HistogramVec

	sources *sources
}

var _ server.Observer = (*Metrics)(nil)

// Label values for what has no route or went past a bound.
const (
	noRoute = "none"
	other   = "other"
)

// New makes the metrics and registers them.
func New(opts Options) (*Metrics, error) {
	if opts.MaxRoutes < 0 || opts.MaxCodes < 0 {
		return nil, fmt.Errorf("%w: MaxRoutes (%d) and MaxCodes (%d) must not be negative", ErrOptions, opts.MaxRoutes, opts.MaxCodes)
	}
	if opts.MaxRoutes == 0 {
		opts.MaxRoutes = 100
	}
	if opts.MaxCodes == 0 {
		opts.MaxCodes = 64
	}
	reg, gat := opts.Registerer, opts.Gatherer
	var runtime []prometheus.Collector
	if reg == nil {
		own := prometheus.NewRegistry()
		reg = own
		if gat == nil {
			gat = own
		}
		runtime = append(runtime, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if gat == nil {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, fmt.Errorf("%w: the Registerer is not a Gatherer; set Options.Gatherer", ErrOptions)
		}
		gat = g
	}
	m := &Metrics{
		gatherer: gat,
		routes:   newBounded(opts.MaxRoutes),
		statuses: newBounded(opts.MaxCodes),
		codes:    newBounded(opts.MaxCodes),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canal_handshakes_total",
			Help: "WebSocket and event-stream handshakes by route pattern, transport, outcome (accepted, rejected, failed) and HTTP status.",
		}, []string{"route", "transport", "outcome", "status"}),
		handshakeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "canal_handshake_duration_seconds",
			Help:    "Time from a handshake request to its answer (Connect and middleware included), by transport and outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"transport", "outcome"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canal_connections",
			Help: "Connections open now (accepted and not yet closed), by route pattern and transport.",
		}, []string{"route", "transport"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canal_connections_closed_total",
			Help: "Connections closed, by route pattern, transport and the close code Disconnect got (1006: peer vanished, 1013: slow consumer dropped).",
		}, []string{"route", "transport", "code"}),
		lifetime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "canal_connection_duration_seconds",
			Help:    "How long connections stayed open, by transport.",
			Buckets: []float64{1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600},
		}, []string{"transport"}),
		sources: &sources{consumers: map[string]ConsumerStats{}, layers: map[string]LayerStats{}},
	}
	for _, c := range append(runtime, m.handshakes, m.handshakeTime, m.open, m.closes, m.lifetime, m.sources) {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// Handler serves the metrics in Prometheus' exposition formats, for "/metrics". It is
// a plain net/http handler; on Fiber, mount it with adaptor.HTTPHandler.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}

// Handshake implements server.Observer.
func (m *Metrics) Handshake(h server.HandshakeInfo) {
	route, outcome := m.route(h.Route), h.Outcome.String()
	m.handshakes.WithLabelValues(route, h.Transport, outcome, m.statuses.number(h.Status)).Inc()
	m.handshakeTime.WithLabelValues(h.Transport, outcome).Observe(h.Duration.Seconds())
	if h.Outcome == server.Accepted {
		m.open.WithLabelValues(route, h.Transport).Inc()
	}
}

// Closed implements server.Observer.
func (m *Metrics) Closed(c server.CloseInfo) {
	route := m.route(c.Route)
	m.open.WithLabelValues(route, c.Transport).Dec()
	m.closes.WithLabelValues(route, c.Transport, m.codes.number(c.Code)).Inc()
	m.lifetime.WithLabelValues(c.Transport).Observe(c.Duration.Seconds())
}

func (m *Metrics) route(r string) string {
	if r == "" {
		return noRoute
	}
	return m.routes.value(r)
}

// bounded hands out label values from an open set: the first max distinct values are
// kept, later newcomers share "other". A value keeps its label for the process's
// life, so a connection opened and closed under "other" adds and subtracts there.
//
// Concurrency: safe for concurrent use; known values take a read lock only.
type bounded struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
	ints map[int]string // the admitted numbers' labels, so a known code costs no allocation
}

func newBounded(max int) *bounded {
	return &bounded{max: max, seen: make(map[string]struct{}), ints: make(map[int]string)}
}

// number returns the label of a status or close code.
func (b *bounded) number(n int) string {
	b.mu.RLock()
	v, ok := b.ints[n]
	b.mu.RUnlock()
	if ok {
		return v
	}
	v = b.value(strconv.Itoa(n))
	if v != other {
		b.mu.Lock()
		b.ints[n] = v // at most max entries: only admitted values
		b.mu.Unlock()
	}
	return v
}

func (b *bounded) value(v string) string {
	b.mu.RLock()
	_, ok := b.seen[v]
	b.mu.RUnlock()
	if ok {
		return v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= b.max {
		return other
	}
	b.seen[v] = struct{}{}
	return v
}

// ServerStats is what Server reads: a *server.Server.
type ServerStats interface{ Stats() server.Stats }

// ConsumerStats is what Consumer reads: a *consumer.Handler of any state type.
type ConsumerStats interface{ Stats() consumer.Stats }

// LayerStats is what Layer reads: a *layers.Redis or *layers.RedisPubSub.
type LayerStats interface{ Stats() layers.RedisStats }

// Server makes the metrics read s's counters and bounds (server.Stats) at every
// scrape: pools, buffered bytes, frames, slow consumers, refused events. It replaces
// the Server given before; nil stops reading.
func (m *Metrics) Server(s ServerStats) {
	m.sources.mu.Lock()
	defer m.sources.mu.Unlock()
	m.sources.server = s
}

// Consumer makes the metrics read h's dropped-event counters (consumer.Stats) at
// every scrape, labelled consumer=name. A second call with the same name replaces the
// first; a nil h removes it.
func (m *Metrics) Consumer(name string, h ConsumerStats) {
	m.sources.mu.Lock()
	defer m.sources.mu.Unlock()
	if h == nil {
		delete(m.sources.consumers, name)
		return
	}
	m.sources.consumers[name] = h
}

// Layer makes the metrics read l's counters (layers.RedisStats: deliveries, drops,
// reconnects) at every scrape, labelled layer=name. A second call with the same name
// replaces the first; a nil l removes it.
func (m *Metrics) Layer(name string, l LayerStats) {
	m.sources.mu.Lock()
	defer m.sources.mu.Unlock()
	if l == nil {
		delete(m.sources.layers, name)
		return
	}
	m.sources.layers[name] = l
}

// Health makes the metrics report h's last round of readiness checks at every
// scrape: canal_ready, and per check canal_ready_check_up and
// canal_ready_check_duration_seconds (a Redis PING's round trip). Scrapes do not run
// checks: the figures are those of the latest /readyz request. Nil stops reporting.
func (m *Metrics) Health(h *Health) {
	m.sources.mu.Lock()
	defer m.sources.mu.Unlock()
	m.sources.health = h
}
