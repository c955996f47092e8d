package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// sources is the collector of what is read at scrape time: the Server's Stats and the
// consumers' and layers' counters. Reading atomic counters once per scrape costs the
// hot path nothing, where a callback per frame would cost every frame.
type sources struct {
	mu        sync.Mutex
	server    ServerStats
	consumers map[string]ConsumerStats
	layers    map[string]LayerStats
	health    *Health
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descConns         = desc("canal_server_connections", "Connections open now, handshaking ones included (server.Stats.Conns).")
	descSockets       = desc("canal_listener_connections", "Connections Listen and Listener hold open now (sockets, streams and plain HTTP alike).")
	descSocketsLimit  = desc("canal_listener_connections_limit", "Options.MaxConnections: connections Listen keeps open at most (absent when unlimited).")
	descShed          = desc("canal_listener_shed_total", "Connections answered 503 at capacity (past MaxConnections, or with no file descriptor left).")
	descSessions      = desc("canal_session_workers", "Goroutines running session calls now.")
	descSessionsPeak  = desc("canal_session_workers_peak", "The most goroutines that ran session calls at once.")
	descSessionsLimit = desc("canal_session_workers_limit", "Options.SessionWorkers: goroutines running session calls at most.")
	descWriters       = desc("canal_write_workers", "Goroutines writing to sockets (GOMAXPROCS, fixed).")
	descBuffered      = desc("canal_buffered_bytes", "Bytes held now for clients that have not taken them.")
	descBufferedLimit = desc("canal_buffered_limit_bytes", "Options.MaxBufferedBytes: bytes held for clients at most, all sockets together.")
	descSlow          = desc("canal_slow_consumers_total", "Connections dropped because their client did not read what it was sent (close code 1013).")
	descRefused       = desc("canal_events_refused_total", "Layer events a connection could not take because its EventQueue was full (the layer saw a full channel).")
	descReceived      = desc("canal_frames_received_total", "Messages received from clients.")
	descSent          = desc("canal_frames_sent_total", "Frames handed to sockets (messages, or events on a stream; not pings or closes).")
	descGroup         = desc("canal_group_frames_total", "Ready group frames delivered to connections (consumer.Options.Frames).")
	descGroupDirect   = desc("canal_group_frames_direct_total", "Ready group frames that went straight to the socket's outbox, without a session call.")

	descConsumerDrops = desc("canal_consumer_events_dropped_total",
		"Layer events a consumer dropped, by consumer and reason (bad_frame, bad_event, unhandled, invalid).", "consumer", "reason")

	descLayerMessages = desc("canal_layer_messages_total",
		"Messages the layer's receive loop took from Redis, by layer and outcome (delivered, dropped: the connection's queue was full, undeliverable: its channel was gone, malformed).", "layer", "outcome")
	descLayerGroupFull = desc("canal_layer_group_full_total", "Group members a group send skipped because their queue was at capacity.", "layer")
	descLayerInvalid   = desc("canal_layer_invalid_members_total", "Group members a group send skipped because their name is not a channel name.", "layer")
	descLayerStale     = desc("canal_layer_stale_members_total", "Group members removed because their Go process had stopped refreshing its liveness key.", "layer")
	descLayerLapses    = desc("canal_layer_liveness_lapses_total", "Times this process found its own liveness key gone.", "layer")
	descLayerReconnect = desc("canal_layer_reconnects_total", "Recoveries from a Redis failure (receive loop or subscriber connection).", "layer")

	descReady     = desc("canal_ready", "1 when the last round of readiness checks passed and the server is not draining, else 0.")
	descCheckUp   = desc("canal_ready_check_up", "1 when the readiness check passed in the last round, else 0.", "check")
	descCheckTime = desc("canal_ready_check_duration_seconds", "How long the readiness check took in the last round (a Redis PING: its round trip).", "check")
)

var allDescs = []*prometheus.Desc{
	descConns, descSockets, descSocketsLimit, descShed, descSessions, descSessionsPeak, descSessionsLimit, descWriters,
	descBuffered, descBufferedLimit, descSlow, descRefused, descReceived, descSent, descGroup, descGroupDirect,
	descConsumerDrops,
	descLayerMessages, descLayerGroupFull, descLayerInvalid, descLayerStale, descLayerLapses, descLayerReconnect,
	descReady, descCheckUp, descCheckTime,
}

func (s *sources) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (s *sources) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	const g, c = prometheus.GaugeValue, prometheus.CounterValue
	if s.server != nil {
		st := s.server.Stats()
		emit(descConns, g, float64(st.Conns))
		emit(descSockets, g, float64(st.Sockets))
		if st.MaxConns > 0 {
			emit(descSocketsLimit, g, float64(st.MaxConns))
		}
		emit(descShed, c, float64(st.Shed))
		emit(descSessions, g, float64(st.SessionWorkers))
		emit(descSessionsPeak, g, float64(st.SessionWorkersPeak))
		emit(descSessionsLimit, g, float64(st.MaxSessionWorkers))
		emit(descWriters, g, float64(st.WriteWorkers))
		emit(descBuffered, g, float64(st.Buffered))
		emit(descBufferedLimit, g, float64(st.MaxBuffered))
		emit(descSlow, c, float64(st.SlowConsumers))
		emit(descRefused, c, float64(st.EventsRefused))
		emit(descReceived, c, float64(st.Received))
		emit(descSent, c, float64(st.Sent))
		emit(descGroup, c, float64(st.Frames))
		emit(descGroupDirect, c, float64(st.FramesDirect))
	}
	for name, h := range s.consumers {
		st := h.Stats()
		emit(descConsumerDrops, c, float64(st.BadFrames), name, "bad_frame")
		emit(descConsumerDrops, c, float64(st.BadEvents), name, "bad_event")
		emit(descConsumerDrops, c, float64(st.Unhandled), name, "unhandled")
		emit(descConsumerDrops, c, float64(st.Invalid), name, "invalid")
	}
	for name, l := range s.layers {
		st := l.Stats()
		emit(descLayerMessages, c, float64(st.Delivered), name, "delivered")
		emit(descLayerMessages, c, float64(st.Dropped), name, "dropped")
		emit(descLayerMessages, c, float64(st.Undeliverable), name, "undeliverable")
		emit(descLayerMessages, c, float64(st.Malformed), name, "malformed")
		emit(descLayerGroupFull, c, float64(st.GroupFull), name)
		emit(descLayerInvalid, c, float64(st.InvalidMembers), name)
		emit(descLayerStale, c, float64(st.StaleMembers), name)
		emit(descLayerLapses, c, float64(st.LivenessLapses), name)
		emit(descLayerReconnect, c, float64(st.Reconnects), name)
	}
	if s.health != nil {
		results, ready := s.health.snapshot()
		emit(descReady, g, b2f(ready))
		for i, r := range results {
			name := s.health.opts.Checks[i].Name
			emit(descCheckUp, g, b2f(r.ok), name)
			emit(descCheckTime, g, r.dur.Seconds(), name)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
