// Package server runs a canal.Handler on a Fiber app: it is the adapter between Canal's
// core and Fiber / fasthttp, and the only package that touches sockets.
//
//	srv, err := server.New(root, server.Options{})
//	srv.Mount(app, "/")         // upgrades go to Canal, other requests to the app
//	...
//	srv.Shutdown(ctx)           // 1001 to every socket, Disconnect hooks run
//	app.ShutdownWithContext(ctx)
//
// # Per connection
//
// The handshake runs on fasthttp's request goroutine, so a refusal is an HTTP status
// before any upgrade (403, 404, 500, 503; never 426). After the 101, one goroutine reads
// the socket. Session calls (one at a time per connection, in arrival order) and
// network writes are tasks on a shared queue served by a few warm goroutines, grown
// by a watchdog when tasks block (a slow peer, a handler waiting on a database), so an
// idle socket costs one goroutine and its buffers, and a group message to thousands of
// sockets costs each one a queued write rather than a new goroutine. A group event
// whose frame the consumer builds once (consumer.Options.Frames) goes straight to the
// socket's write queue when the connection has nothing else pending.
//
// Every queue is bounded: client frames (FrameQueue, then TCP back-pressure), layer
// events (EventQueue, then the layer sees a full channel), and outgoing frames
// (SendQueue, then the slow client is closed with 1013). Keepalive pings go out every
// PingInterval; a peer silent for PingInterval+PongTimeout is dropped.
//
// # Server-Sent Events
//
// With Options.EventStreams, a GET that accepts text/event-stream runs the same
// handlers as a WebSocket, with Scope.Type "sse": Accept answers 200, every text frame
// sent becomes an event, layer events and group messages arrive as they do on a
// socket, and Close ends the stream with a last event named "close" holding
// {"code", "reason"}. This gives Channels' HTTP consumers what they lack: a
// long-lived response fed by the channel layer. See ExampleOptions_eventStreams.
//
// Logs carry the route pattern and the decoded path, never the query string, cookies or
// tickets.
package server
