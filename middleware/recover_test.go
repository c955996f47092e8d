package middleware_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/middleware"
)

// panicky panics where told to; every other step succeeds.
type panicky struct {
	connectBeforeAccept, connectAfterAccept bool
	receive, event, disconnect              bool
}

func (p *panicky) Connect(_ context.Context, c canal.Conn) (canal.Session, error) {
	if p.connectBeforeAccept {
		panic("boom before accept")
	}
	if err := c.Accept(canal.AcceptOptions{}); err != nil {
		return nil, err
	}
	if p.connectAfterAccept {
		panic(errors.New("boom after accept"))
	}
	return p, nil
}

func (p *panicky) Receive(context.Context, canal.Conn, canal.Frame) error {
	if p.receive {
		var m map[string]int
		m["x"] = 1 // a runtime panic, not just a panic(...) call
	}
	return nil
}

func (p *panicky) Event(context.Context, canal.Conn, canal.Message) error {
	if p.event {
		panic(nil) // recovered as *runtime.PanicNilError since Go 1.21
	}
	return nil
}

func (p *panicky) Disconnect(context.Context, canal.Conn, int) {
	if p.disconnect {
		panic("boom in disconnect")
	}
}

// reports collects what Recover reports.
type reports struct {
	mu     sync.Mutex
	values []any
	stacks [][]byte
	scopes []*canal.Scope
}

func (r *reports) report(_ context.Context, s *canal.Scope, v any, stack []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values = append(r.values, v)
	r.stacks = append(r.stacks, stack)
	r.scopes = append(r.scopes, s)
}

func (r *reports) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.values)
}

func TestRecoverConnect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		h      *panicky
		status int // RejectError status, or 0
		code   int // CloseError code, or 0
	}{
		{name: "before accept", h: &panicky{connectBeforeAccept: true}, status: http.StatusInternalServerError},
		{name: "after accept", h: &panicky{connectAfterAccept: true}, code: canal.CloseInternalError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r reports
			c := newConn(&canal.Scope{Path: "/ws/chat/lobby/", RoutePattern: "ws/chat/<str:room>/"})
			sess, err := middleware.Recover(r.report)(tt.h).Connect(context.Background(), c)
			if sess != nil {
				t.Fatalf("session %v after a panic", sess)
			}
			var rej *canal.RejectError
			var cl *canal.CloseError
			switch {
			case tt.status != 0:
				if !errors.As(err, &rej) || rej.Status != tt.status || rej.Reason != "panic" {
					t.Fatalf("err = %#v, want RejectError %d", err, tt.status)
				}
			default:
				if !errors.As(err, &cl) || cl.Code != tt.code {
					t.Fatalf("err = %#v, want CloseError %d", err, tt.code)
				}
			}
			if r.len() != 1 || r.scopes[0] != c.scope {
				t.Fatalf("reports = %d, scope %p (want %p)", r.len(), r.scopes, c.scope)
			}
			if !bytes.Contains(r.stacks[0], []byte("panicky).Connect")) {
				t.Fatalf("stack does not show the panicking frame:\n%s", r.stacks[0])
			}
		})
	}
}

func TestRecoverSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    *panicky
		run  func(s canal.Session, c canal.Conn) error
	}{
		{"receive", &panicky{receive: true}, func(s canal.Session, c canal.Conn) error {
			return s.Receive(context.Background(), c, canal.Text("hi"))
		}},
		{"event", &panicky{event: true}, func(s canal.Session, c canal.Conn) error {
			return s.Event(context.Background(), c, canal.Message{"type": "chat.message"})
		}},
		{"disconnect", &panicky{disconnect: true}, func(s canal.Session, c canal.Conn) error {
			s.Disconnect(context.Background(), c, canal.CloseNormal)
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r reports
			c := newConn(nil)
			sess, err := middleware.Recover(r.report)(tt.h).Connect(context.Background(), c)
			if err != nil || sess == nil {
				t.Fatalf("Connect = %v, %v", sess, err)
			}
			err = tt.run(sess, c)
			if tt.name == "disconnect" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var cl *canal.CloseError
				if !errors.As(err, &cl) || cl.Code != canal.CloseInternalError || cl.Reason != "" {
					t.Fatalf("err = %#v, want CloseError 1011 without reason", err)
				}
			}
			if r.len() != 1 {
				t.Fatalf("%d reports, want 1", r.len())
			}
			if tt.name == "event" {
				if _, ok := r.values[0].(*runtime.PanicNilError); !ok {
					t.Fatalf("panic(nil) reported as %T", r.values[0])
				}
			}
		})
	}
}

func TestRecoverPassesThrough(t *testing.T) {
	t.Parallel()
	var r reports
	h := middleware.Recover(r.report)(&panicky{})
	c := newConn(nil)
	sess, err := h.Connect(context.Background(), c)
	if err != nil || sess == nil || !c.Accepted() {
		t.Fatalf("Connect = %v, %v", sess, err)
	}
	if err := sess.Receive(context.Background(), c, canal.Text("x")); err != nil {
		t.Fatal(err)
	}
	if err := sess.Event(context.Background(), c, canal.Message{"type": "x"}); err != nil {
		t.Fatal(err)
	}
	sess.Disconnect(context.Background(), c, canal.CloseNormal)

	want := canal.Reject(401, "no")
	_, err = middleware.Recover(r.report)(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
		return nil, want
	})).Connect(context.Background(), c)
	if err != want {
		t.Fatalf("err = %v, want the handler's own error", err)
	}

	sessErr := errors.New("session error")
	inner := &errSession{err: sessErr}
	sess, _ = middleware.Recover(r.report)(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
		return inner, nil
	})).Connect(context.Background(), c)
	if err := sess.Receive(context.Background(), c, canal.Text("x")); err != sessErr {
		t.Fatalf("Receive err = %v", err)
	}
	if err := sess.Event(context.Background(), c, canal.Message{"type": "x"}); err != sessErr {
		t.Fatalf("Event err = %v", err)
	}
	if r.len() != 0 {
		t.Fatalf("%d reports without a panic", r.len())
	}
}

type errSession struct{ err error }

func (s *errSession) Receive(context.Context, canal.Conn, canal.Frame) error { return s.err }
func (s *errSession) Event(context.Context, canal.Conn, canal.Message) error { return s.err }
func (s *errSession) Disconnect(context.Context, canal.Conn, int)            {}

// TestRecoverDefaultLog swaps slog's default logger, so it does not call t.Parallel:
// Go resumes parallel tests only after the sequential ones have finished.
func TestRecoverDefaultLog(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)

	c := newConn(&canal.Scope{
		Path:         "/ws/chat/lobby/",
		RawQuery:     "token=secret-1a2b3c",
		RoutePattern: "ws/chat/<str:room>/",
	})
	_, err := middleware.Recover(nil)(&panicky{connectBeforeAccept: true}).Connect(context.Background(), c)
	var rej *canal.RejectError
	if !errors.As(err, &rej) || rej.Status != 500 {
		t.Fatalf("err = %v", err)
	}
	out := buf.String()
	for _, want := range []string{"level=ERROR", "ws/chat/<str:room>/", "/ws/chat/lobby/", "boom before accept", "phase=connect"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret-1a2b3c") || strings.Contains(out, "token=") {
		t.Errorf("log leaks the query string:\n%s", out)
	}
}
