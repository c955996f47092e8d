// Package ratelog keeps repeated log lines from flooding a log: a [Limiter] lets at
// most one line per key through per interval (one second by default), counts the
// lines it holds back, and reports that count in the next line it lets through.
//
// It exists because several of Canal's log lines are caused by remote input (a
// hostile message in Redis, a group event no consumer handles, a refused
// handshake): one bad message to a group of thousands, or a client retrying in a
// loop, must cost one line, not thousands.
//
// A Limiter's zero value is ready to use, safe for concurrent use, and starts no
// goroutine: time is read when a line is offered. Its memory is bounded: at most
// MaxKeys keys (1024 by default) are tracked one by one; past that, new keys share
// one bucket until idle keys are swept. Keys should name a kind of event (an event
// type, a route, a reason), never a secret: the key is not logged by [Limiter.Log]
// but callers often log it.
package ratelog
