package middleware

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/canal-rt/canal"
)

// Recover returns a middleware that turns panics in the handlers and sessions it
// wraps into errors, so one faulty connection never takes the server down:
//
//   - a panic in Connect before the accept refuses the handshake with HTTP 500
//     (&canal.RejectError{Status: 500, Reason: "panic"});
//   - a panic in Connect after the accept closes with 1011 (&canal.CloseError{Code: 1011});
//   - a panic in Session.Receive or Session.Event closes with 1011
//     (&canal.CloseError{Code: canal.CloseInternalError});
//   - a panic in Session.Disconnect is swallowed: the connection is over anyway.
//
// Each panic is passed to report with the connection's scope, the panic value and the
// stack of the panicking goroutine. report runs on that goroutine, must be safe for
// concurrent use and must not panic. A nil report logs with log/slog at Error level,
// with the route pattern and path but never the query string, which may carry tokens.
//
// Put Recover first in a stack so it covers the middleware after it. The Session it
// returns wraps the next handler's: optional interfaces that session implements are
// not visible through the wrapper. The middleware is immutable and safe for
// concurrent use.
func Recover(report func(ctx context.Context, s *canal.Scope, v any, stack []byte)) canal.Middleware {
	r := &recoverer{report: report}
	return func(next canal.Handler) canal.Handler {
		if next == nil {
			panic("middleware: Recover: nil next handler")
		}
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (sess canal.Session, err error) {
			defer func() {
				if v := recover(); v != nil {
					r.fire(ctx, c, "connect", v)
					sess = nil
					if c.Accepted() {
						err = &canal.CloseError{Code: canal.CloseInternalError}
					} else {
						err = &canal.RejectError{Status: http.StatusInternalServerError, Reason: "panic"}
					}
				}
			}()
			sess, err = next.Connect(ctx, c)
			if sess != nil {
				sess = &recoverSession{next: sess, r: r}
			}
			return sess, err
		})
	}
}

type recoverer struct {
	report func(ctx context.Context, s *canal.Scope, v any, stack []byte)
}

// fire reports the panic v recovered in phase. It is called from the deferred
// function, so debug.Stack still shows the panicking frames.
func (r *recoverer) fire(ctx context.Context, c canal.Conn, phase string, v any) {
	stack := debug.Stack()
	s := c.Scope()
	if r.report != nil {
		r.report(ctx, s, v, stack)
		return
	}
	attrs := []any{slog.String("phase", phase)}
	if s != nil {
		attrs = append(attrs, slog.String("route", s.RoutePattern), slog.String("path", s.Path))
	}
	attrs = append(attrs, slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(stack)))
	slog.Default().ErrorContext(ctx, "middleware: recovered panic", attrs...)
}

// recoverSession guards one connection's session; the server calls it one method at a
// time, so it needs no locking of its own.
type recoverSession struct {
	next canal.Session
	r    *recoverer
}

func (s *recoverSession) Receive(ctx context.Context, c canal.Conn, f canal.Frame) (err error) {
	defer s.recoverTo(ctx, c, "receive", &err)
	return s.next.Receive(ctx, c, f)
}

func (s *recoverSession) Event(ctx context.Context, c canal.Conn, m canal.Message) (err error) {
	defer s.recoverTo(ctx, c, "event", &err)
	return s.next.Event(ctx, c, m)
}

func (s *recoverSession) Disconnect(ctx context.Context, c canal.Conn, code int) {
	defer s.recoverTo(ctx, c, "disconnect", nil)
	s.next.Disconnect(ctx, c, code)
}

// recoverTo must be deferred directly: recover only works in the deferred call itself.
func (s *recoverSession) recoverTo(ctx context.Context, c canal.Conn, phase string, err *error) {
	v := recover()
	if v == nil {
		return
	}
	s.r.fire(ctx, c, phase, v)
	if err != nil {
		*err = &canal.CloseError{Code: canal.CloseInternalError}
	}
}
