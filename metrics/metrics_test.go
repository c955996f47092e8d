package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/metrics"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// chat is Channels' tutorial consumer: a message from one member goes to the group.
type chat struct{ group string }

func (ch *chat) Connect(ctx context.Context, c *consumer.Conn) error {
	ch.group = "chat_" + c.Scope().Route.String("room")
	if err := c.GroupAdd(ctx, ch.group); err != nil {
		return err
	}
	return c.Accept()
}

func (ch *chat) ReceiveJSON(ctx context.Context, c *consumer.Conn, content json.RawMessage) error {
	var in struct{ Message string }
	if err := json.Unmarshal(content, &in); err != nil {
		return err
	}
	return c.GroupSend(ctx, ch.group, canal.Message{"type": "chat.message", "message": in.Message})
}

func (ch *chat) ChatMessage(_ context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]any{"message": m["message"]})
}

// serve starts a Canal server observed by m, and m's Handler on an HTTP server of its
// own (as a separate metrics port would be); it returns the server and the metrics URL.
func serve(t *testing.T, m *metrics.Metrics, root canal.Handler) (*canaltest.Server, string) {
	t.Helper()
	s := canaltest.NewServer(t, root, server.Options{Observer: m, Logger: quiet})
	m.Server(s.Server)
	hs := httptest.NewServer(m.Handler())
	t.Cleanup(hs.Close)
	return s, hs.URL + "/metrics"
}

// eventually scrapes url until the named metrics are exactly want, or fails after a
// bound: closes are reported once the server has run Disconnect, a moment after the
// client saw its close frame.
func eventually(t *testing.T, url, want string, names ...string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = testutil.ScrapeAndCompare(url, strings.NewReader(want), names...); err == nil {
			return
		}
	}
	t.Fatal(err)
}

// TestScrape: a real server and real clients, a Redis layer and a consumer; /metrics
// is scraped over HTTP and parsed, and holds exactly the traffic that happened.
func TestScrape(t *testing.T) {
	ctx := ctxT(t)
	rd := canaltest.StartRedis(t)
	layer, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{rd.URL()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = layer.Close(context.Background()) })
	ch, err := consumer.New(func() *chat { return &chat{} }, consumer.Options[*chat]{
		Layer:  layer,
		Events: map[string]consumer.EventFunc[*chat]{"chat.message": (*chat).ChatMessage},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	private := canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
		return nil, canal.Reject(http.StatusForbidden, "members only")
	})
	m, err := metrics.New(metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Consumer("chat", ch)
	m.Layer("redis", layer)
	s, url := serve(t, m, router.Must(
		router.Path("ws/chat/<slug:room>/", ch),
		router.Path("ws/private/", private),
	))

	var members []*canaltest.Communicator
	for range 3 {
		c, err := canaltest.Dial(ctx, s.URL("/ws/chat/lobby/"), canaltest.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Abort)
		members = append(members, c)
	}
	for path, status := range map[string]int{"/ws/private/": 403, "/ws/nowhere/": 404} {
		var he *canaltest.HandshakeError
		if _, err := canaltest.Dial(ctx, s.URL(path), canaltest.DialOptions{}); !errors.As(err, &he) || he.Status != status {
			t.Fatalf("dial %s: %v, want HTTP %d", path, err, status)
		}
	}
	if err := members[0].SendJSON(map[string]string{"message": "hi"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range members {
		var got struct{ Message string }
		if err := c.ReceiveJSON(ctx, &got); err != nil || got.Message != "hi" {
			t.Fatalf("member %d: %+v, %v", i, got, err)
		}
	}
	for _, c := range members[:2] {
		if err := c.Close(canal.CloseNormal); err != nil {
			t.Fatal(err)
		}
	}

	const route = `route="ws/chat/<slug:room>/"`
	eventually(t, url, `
# HELP canal_handshakes_total WebSocket and event-stream handshakes by route pattern, transport, outcome (accepted, rejected, failed) and HTTP status.
# TYPE canal_handshakes_total counter
canal_handshakes_total{outcome="accepted",`+route+`,status="101",transport="websocket"} 3
canal_handshakes_total{outcome="rejected",route="ws/private/",status="403",transport="websocket"} 1
canal_handshakes_total{outcome="rejected",route="none",status="404",transport="websocket"} 1
# HELP canal_connections Connections open now (accepted and not yet closed), by route pattern and transport.
# TYPE canal_connections gauge
canal_connections{`+route+`,transport="websocket"} 1
# HELP canal_connections_closed_total Connections closed, by route pattern, transport and the close code Disconnect got (1006: peer vanished, 1013: slow consumer dropped).
# TYPE canal_connections_closed_total counter
canal_connections_closed_total{code="1000",`+route+`,transport="websocket"} 2
# HELP canal_server_connections Connections open now, handshaking ones included (server.Stats.Conns).
# TYPE canal_server_connections gauge
canal_server_connections 1
# HELP canal_listener_connections Connections Listen and Listener hold open now (sockets, streams and plain HTTP alike).
# TYPE canal_listener_connections gauge
canal_listener_connections 1
# HELP canal_listener_shed_total Connections answered 503 at capacity (past MaxConnections, or with no file descriptor left).
# TYPE canal_listener_shed_total counter
canal_listener_shed_total 0
# HELP canal_frames_received_total Messages received from clients.
# TYPE canal_frames_received_total counter
canal_frames_received_total 1
# HELP canal_frames_sent_total Frames handed to sockets (messages, or events on a stream; not pings or closes).
# TYPE canal_frames_sent_total counter
canal_frames_sent_total 3
# HELP canal_slow_consumers_total Connections dropped because their client did not read what it was sent (close code 1013).
# TYPE canal_slow_consumers_total counter
canal_slow_consumers_total 0
# HELP canal_session_workers_limit Options.SessionWorkers: goroutines running session calls at most.
# TYPE canal_session_workers_limit gauge
canal_session_workers_limit 256
# HELP canal_buffered_limit_bytes Options.MaxBufferedBytes: bytes held for clients at most, all sockets together.
# TYPE canal_buffered_limit_bytes gauge
canal_buffered_limit_bytes 6.7108864e+07
# HELP canal_layer_messages_total Messages the layer's receive loop took from Redis, by layer and outcome (delivered, dropped: the connection's queue was full, undeliverable: its channel was gone, malformed).
# TYPE canal_layer_messages_total counter
canal_layer_messages_total{layer="redis",outcome="delivered"} 3
canal_layer_messages_total{layer="redis",outcome="dropped"} 0
canal_layer_messages_total{layer="redis",outcome="malformed"} 0
canal_layer_messages_total{layer="redis",outcome="undeliverable"} 0
# HELP canal_consumer_events_dropped_total Layer events a consumer dropped, by consumer and reason (bad_frame, bad_event, unhandled, invalid).
# TYPE canal_consumer_events_dropped_total counter
canal_consumer_events_dropped_total{consumer="chat",reason="bad_event"} 0
canal_consumer_events_dropped_total{consumer="chat",reason="bad_frame"} 0
canal_consumer_events_dropped_total{consumer="chat",reason="invalid"} 0
canal_consumer_events_dropped_total{consumer="chat",reason="unhandled"} 0
`, "canal_handshakes_total", "canal_connections", "canal_connections_closed_total", "canal_server_connections",
		"canal_listener_connections", "canal_listener_shed_total",
		"canal_frames_received_total", "canal_frames_sent_total", "canal_slow_consumers_total",
		"canal_session_workers_limit", "canal_buffered_limit_bytes", "canal_layer_messages_total",
		"canal_consumer_events_dropped_total")

	// The runtime's metrics come with the registry of its own, the histograms with
	// every handshake and close.
	fams := scrape(t, url)
	for name, series := range map[string]int{
		"go_goroutines":                     1,
		"canal_handshake_duration_seconds":  2, // websocket: accepted, rejected
		"canal_connection_duration_seconds": 1,
	} {
		f := fams[name]
		if f == nil || len(f.Metric) != series {
			t.Errorf("%s: %v, want %d series", name, f, series)
		}
	}
	if h := fams["canal_connection_duration_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 2 {
		t.Errorf("connection durations: %d samples, want 2", h.GetSampleCount())
	}
}

// scrape gets url and parses the text exposition format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// TestLabelsBounded: routes, statuses and close codes past their bounds share
// "other", and a connection opened under "other" closes there.
func TestLabelsBounded(t *testing.T) {
	m, err := metrics.New(metrics.Options{MaxRoutes: 2, MaxCodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(m.Handler())
	defer hs.Close()
	for i, r := range []string{"a/", "b/", "c/", "d/", "a/"} {
		m.Handshake(server.HandshakeInfo{Route: r, Transport: "websocket", Outcome: server.Accepted, Status: 101})
		m.Handshake(server.HandshakeInfo{Route: r, Transport: "websocket", Outcome: server.Rejected, Status: 400 + i})
		m.Closed(server.CloseInfo{Route: r, Transport: "websocket", Code: 4000 + i})
	}
	m.Handshake(server.HandshakeInfo{Transport: "sse", Outcome: server.Rejected, Status: 404})
	want := `
# HELP canal_handshakes_total WebSocket and event-stream handshakes by route pattern, transport, outcome (accepted, rejected, failed) and HTTP status.
# TYPE canal_handshakes_total counter
canal_handshakes_total{outcome="accepted",route="a/",status="101",transport="websocket"} 2
canal_handshakes_total{outcome="accepted",route="b/",status="101",transport="websocket"} 1
canal_handshakes_total{outcome="accepted",route="other",status="101",transport="websocket"} 2
canal_handshakes_total{outcome="rejected",route="a/",status="400",transport="websocket"} 1
canal_handshakes_total{outcome="rejected",route="a/",status="other",transport="websocket"} 1
canal_handshakes_total{outcome="rejected",route="b/",status="other",transport="websocket"} 1
canal_handshakes_total{outcome="rejected",route="other",status="other",transport="websocket"} 2
canal_handshakes_total{outcome="rejected",route="none",status="other",transport="sse"} 1
# HELP canal_connections Connections open now (accepted and not yet closed), by route pattern and transport.
# TYPE canal_connections gauge
canal_connections{route="a/",transport="websocket"} 0
canal_connections{route="b/",transport="websocket"} 0
canal_connections{route="other",transport="websocket"} 0
# HELP canal_connections_closed_total Connections closed, by route pattern, transport and the close code Disconnect got (1006: peer vanished, 1013: slow consumer dropped).
# TYPE canal_connections_closed_total counter
canal_connections_closed_total{code="4000",route="a/",transport="websocket"} 1
canal_connections_closed_total{code="4001",route="b/",transport="websocket"} 1
canal_connections_closed_total{code="other",route="other",transport="websocket"} 2
canal_connections_closed_total{code="other",route="a/",transport="websocket"} 1
`
	if err := testutil.ScrapeAndCompare(hs.URL, strings.NewReader(want), "canal_handshakes_total", "canal_connections", "canal_connections_closed_total"); err != nil {
		t.Fatal(err)
	}
}

// TestLint: every metric follows Prometheus' naming conventions (promlint), with a
// Registerer of the caller's own, which gets Canal's metrics only.
func TestLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(metrics.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
		return nil, canal.Reject(403, "")
	}), server.Options{Observer: m, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	m.Server(srv)
	m.Consumer("c", fixedConsumer{BadFrames: 1})
	m.Layer("l", fixedLayer{Reconnects: 2})
	h, err := metrics.NewHealth(metrics.HealthOptions{Checks: []metrics.Check{{Name: "ok", Func: func(context.Context) error { return nil }}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.Health(h)
	m.Handshake(server.HandshakeInfo{Route: "r/", Transport: "websocket", Outcome: server.Accepted, Status: 101})
	m.Closed(server.CloseInfo{Route: "r/", Transport: "websocket", Code: 1000})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "canal_") {
			t.Errorf("%s in a Registerer of the caller's own", f.GetName())
		}
	}
	if len(fams) < 30 { // 31 with canal_listener_connections_limit, there when the file limit is known
		t.Errorf("%d metric families, want every one of them", len(fams))
	}
	if _, err := metrics.New(metrics.Options{Registerer: reg}); err == nil {
		t.Error("registering twice in one registry succeeded")
	}
}

type fixedConsumer consumer.Stats

func (f fixedConsumer) Stats() consumer.Stats { return consumer.Stats(f) }

type fixedLayer layers.RedisStats

func (f fixedLayer) Stats() layers.RedisStats { return layers.RedisStats(f) }
