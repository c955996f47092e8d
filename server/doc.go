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
// the socket. Everything else is bounded by construction, not by timing:
//
//   - Session calls (one at a time per connection, in arrival order) are tasks on a
//     queue served by at most SessionWorkers goroutines: a few warm ones, more while
//     tasks block (a handler waiting on a database), never past the limit. A
//     connection has at most one such task queued.
//   - Writes are tasks on GOMAXPROCS goroutines that never wait for the
//     network: everything due (frames, a ping, the close) is encoded into one buffer
//     and offered to the kernel without blocking. What the kernel does not take waits
//     in the socket's own buffer, written by a goroutine of that socket's own, within
//     SendBuffer bytes per socket and MaxBufferedBytes for the process. The kernel's
//     own send buffer is kept to SocketSendBuffer (Linux), so a client that stops
//     reading is noticed after kilobytes, not the megabytes autotuning allows.
//   - Each connection holds at most FrameQueue client frames (then TCP back-pressure),
//     EventQueue layer events (then the layer sees a full channel, counted in Stats),
//     and SendQueue outgoing frames (a handler's Send then waits for the writer).
//
// A client that stops reading is a slow consumer once it is SendBuffer bytes and
// SendQueue frames behind, or a write waited WriteTimeout: its TCP
// connection is dropped (no close frame fits in its full buffers) and Disconnect gets
// 1013. A busy handler is not a slow client: its events wait. So goroutines stay below
// two per socket plus the pools, memory below the limits above, and a starved CPU
// makes the server slower, never bigger. Stats reports the pools, buffered bytes, slow
// consumers and refused events.
//
// A group event whose frame the consumer builds once (consumer.Options.Frames) goes
// straight to the socket's outbox when the connection has nothing else pending.
// Keepalive pings go out every PingInterval; a peer silent for PingInterval+PongTimeout
// is dropped.
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
// tickets; lines that clients can cause (refused handshakes, slow consumers, handler
// errors) go out at most once a second per kind, with a count of the ones held back.
package server
