// Package metrics exports a Canal server's metrics to Prometheus and serves health
// checks. It is the only package of Canal that imports Prometheus: the server reports
// through the small server.Observer interface and its Stats counters.
//
//	m, err := metrics.New(metrics.Options{})        // a registry of its own
//	srv, err := server.New(root, server.Options{Observer: m})
//	m.Server(srv)                                   // Stats, read at each scrape
//	m.Consumer("chat", chatHandler)                 // optional: dropped events
//	m.Layer("redis", layer)                         // optional: Redis layer counters
//	m.Health(health)                                // optional: readiness checks
//	http.Handle("/metrics", m.Handler())
//
// Handshakes and closes are counted as they happen (a few map look-ups and atomic
// additions, no allocation: under a microsecond for a handshake and its close);
// everything per frame is read from the Server's atomic counters when Prometheus
// scrapes, so metrics add no call to the per-frame path.
//
// # Metrics
//
// Counted as they happen (server.Observer):
//
//	canal_handshakes_total{route,transport,outcome,status}       counter
//	canal_handshake_duration_seconds{transport,outcome}           histogram
//	canal_connections{route,transport}                            gauge: open now
//	canal_connections_closed_total{route,transport,code}          counter
//	canal_connection_duration_seconds{transport}                  histogram
//
// Read at scrape time from server.Stats (Metrics.Server):
//
//	canal_server_connections          gauge: open now, handshaking ones included
//	canal_listener_connections        gauge: TCP connections Listen holds (HTTP included)
//	canal_listener_connections_limit  gauge: Options.MaxConnections (absent when unlimited)
//	canal_listener_shed_total         counter: connections answered 503 at capacity
//	canal_session_workers             gauge: goroutines running session calls now
//	canal_session_workers_peak        gauge: the most at once
//	canal_session_workers_limit       gauge: Options.SessionWorkers
//	canal_write_workers               gauge: goroutines writing to sockets
//	canal_buffered_bytes              gauge: bytes held for clients that have not taken them
//	canal_buffered_limit_bytes        gauge: Options.MaxBufferedBytes
//	canal_slow_consumers_total        counter: clients dropped for not reading (1013)
//	canal_events_refused_total        counter: layer events refused (EventQueue full)
//	canal_frames_received_total       counter: messages from clients
//	canal_frames_sent_total           counter: frames handed to sockets
//	canal_group_frames_total          counter: ready group frames delivered
//	canal_group_frames_direct_total   counter: those that skipped the session call
//
// Read at scrape time from consumers (Metrics.Consumer) and Redis layers
// (Metrics.Layer):
//
//	canal_consumer_events_dropped_total{consumer,reason}  reason: bad_frame, bad_event, unhandled, invalid
//	canal_layer_messages_total{layer,outcome}             outcome: delivered, dropped, undeliverable, malformed
//	canal_layer_group_full_total{layer}
//	canal_layer_invalid_members_total{layer}
//	canal_layer_stale_members_total{layer}
//	canal_layer_liveness_lapses_total{layer}
//	canal_layer_reconnects_total{layer}
//
// Read at scrape time from a Health (Metrics.Health), as its latest /readyz round
// left them:
//
//	canal_ready                                   gauge: 1 ready, 0 not (a check failed, or draining)
//	canal_ready_check_up{check}                   gauge: 1 passed, 0 failed
//	canal_ready_check_duration_seconds{check}     gauge: how long it took (a Redis PING's round trip)
//
// With a registry of its own (Options.Registerer nil), Go's runtime and process
// metrics come too: go_goroutines, go_memstats_*, process_open_fds, ...
//
// # Labels
//
// Label values are bounded, so a scan of random URLs cannot grow the series without
// end: route is the matched route pattern (canal.Scope.RoutePattern, e.g.
// "ws/chat/<str:room>/"), never the path, or "none" for requests refused before
// routing or matching no route; transport is "websocket" or "sse"; outcome is
// "accepted", "rejected" or "failed" (see server.Outcome); status is the HTTP status
// (101 or 200 when accepted) and code the close code, never a reason text. Past
// Options.MaxRoutes routes or Options.MaxCodes statuses or codes, new values are
// counted under "other".
//
// # Health
//
// Health serves "/healthz" (the process answers) and "/readyz" (every check passes:
// a Redis PING, say, each within a short timeout). Both are plain net/http handlers;
// Fiber mounts them, and Handler, with adaptor.HTTPHandler from
// github.com/gofiber/fiber/v2/middleware/adaptor (see Example).
package metrics
