// Package canal is the core of Canal, Django Channels' programming model in Go.
//
// The core is small and has no dependency on a web framework or a Redis client:
//
//   - [Scope] describes one connection: path, query, headers, route arguments, user.
//   - [Handler] decides a handshake and returns a [Session]; middleware is a
//     func(next Handler) Handler, as in chi.
//   - [Conn] is what a handler and its session drive: Accept, Send, Close.
//   - [Layer] is the channel layer: send, receive, groups. Implementations live in
//     package layers (in-memory, Redis).
//
// Package router maps paths to handlers, package middleware holds origin checks and
// authentication, package consumer gives the Channels-style consumer, and package
// server runs all of it on a Fiber app.
//
// # Lifecycle of a connection
//
// The server builds a Scope and calls Handler.Connect on the handshake. Connect (or an
// event handled before the accept timeout) calls Conn.Accept, which answers 101, or
// Conn.Close / returns an error, which answers 403 (or the status of a [RejectError]).
// After the accept, client frames and layer messages reach the Session one at a time,
// in arrival order, and Session.Disconnect runs exactly once at the end.
package canal
