package middleware_test

import (
	"cmp"
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/ticket"
)

// frameConn is a fakeConn with the server's fan-out capability: it counts the frames
// handed to it ready-made.
type frameConn struct {
	*fakeConn
	fmu    sync.Mutex
	frames []string
}

func (c *frameConn) DeliverFrame(_ canal.Message, f canal.Frame) bool {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	c.frames = append(c.frames, string(f.Data))
	return true
}

func (c *frameConn) counts() (frames, delivered int) {
	c.fmu.Lock()
	frames = len(c.frames)
	c.fmu.Unlock()
	c.mu.Lock()
	delivered = len(c.delivered)
	c.mu.Unlock()
	return frames, delivered
}

// hidingConn wraps a Conn without Unwrap, as a careless third-party middleware might:
// the control case, where the fast path must be lost.
type hidingConn struct{ canal.Conn }

type relay struct{}

// TestFrameDelivererThroughMiddleware: whatever middleware stands between the server
// and a consumer, the consumer's Frames reach the server's DeliverFrame (one queued
// write per member) rather than a session call per member.
func TestFrameDelivererThroughMiddleware(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	issue := func(t *testing.T) string {
		tk, err := store.Issue(context.Background(), canal.User{ID: "42", Username: "ada"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	tkt, err := middleware.Ticket(store, middleware.TicketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	session, err := middleware.Session(sessionLookup, middleware.SessionOptions{Required: true})
	if err != nil {
		t.Fatal(err)
	}
	token, err := middleware.Token(testLookup, middleware.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hide := func(next canal.Handler) canal.Handler {
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			return next.Connect(ctx, &hidingConn{c})
		})
	}
	tests := []struct {
		name      string
		mw        canal.Middleware
		scope     func(tk string) *canal.Scope
		firstMsg  bool   // the credential goes in the first frame
		first     string // that frame; "" for {"ticket": tk}
		wantFrame bool   // false: the control case, fast path lost
	}{
		{name: "ticket in the query", mw: tkt, wantFrame: true,
			scope: func(tk string) *canal.Scope { return &canal.Scope{RawQuery: "ticket=" + tk} }},
		{name: "ticket in the subprotocol", mw: tkt, wantFrame: true,
			scope: func(tk string) *canal.Scope {
				return &canal.Scope{
					Subprotocols: []string{"canal.ticket", "canal.ticket." + tk},
					Headers:      http.Header{"Sec-Websocket-Protocol": {"canal.ticket, canal.ticket." + tk}},
				}
			}},
		{name: "ticket in the first message", mw: tkt, firstMsg: true, wantFrame: true,
			scope: func(string) *canal.Scope { return &canal.Scope{} }},
		{name: "session cookie", mw: session, wantFrame: true,
			scope: func(string) *canal.Scope {
				return &canal.Scope{Headers: http.Header{"Cookie": {"sessionid=" + liveKey}}}
			}},
		{name: "token in the query", mw: token, wantFrame: true,
			scope: func(string) *canal.Scope { return &canal.Scope{RawQuery: "token=" + goodToken} }},
		{name: "token in the subprotocol", mw: token, wantFrame: true,
			scope: func(string) *canal.Scope {
				return &canal.Scope{Subprotocols: []string{"canal.token", "canal.token." + goodToken}}
			}},
		{name: "token in the subprotocol, base64url", mw: token, wantFrame: true,
			scope: func(string) *canal.Scope {
				return &canal.Scope{Subprotocols: []string{"canal.token", middleware.BearerProtocol("canal.token", plusToken)}}
			}},
		{name: "bare token in the first message", mw: token, firstMsg: true, wantFrame: true, first: goodToken,
			scope: func(string) *canal.Scope { return &canal.Scope{} }},
		{name: "JSON token in the first message", mw: token, firstMsg: true, wantFrame: true, first: `{"token":"` + goodToken + `"}`,
			scope: func(string) *canal.Scope { return &canal.Scope{} }},
		{name: "stack: recover, session, ticket by subprotocol", wantFrame: true,
			mw: func(next canal.Handler) canal.Handler {
				return middleware.Stack(middleware.Recover(nil), session, tkt)(next)
			},
			scope: func(tk string) *canal.Scope {
				return &canal.Scope{
					Headers:      http.Header{"Cookie": {"sessionid=" + liveKey}},
					Subprotocols: []string{"canal.ticket", "canal.ticket." + tk},
				}
			}},
		{name: "control: a wrapper without Unwrap hides it", mw: hide, wantFrame: false,
			scope: func(string) *canal.Scope { return &canal.Scope{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			layer, err := layers.NewMemory(layers.MemoryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = layer.Close(context.Background()) })
			h, err := consumer.New(func() relay { return relay{} }, consumer.Options[relay]{
				Layer: layer, Groups: []string{"room"},
				Frames: map[string]consumer.FrameFunc{"room.message": consumer.JSONFrame(func(m canal.Message) any {
					return map[string]any{"text": m["text"]}
				})},
			})
			if err != nil {
				t.Fatal(err)
			}
			tk := issue(t)
			c := &frameConn{fakeConn: newConn(tt.scope(tk))}
			ctx := context.Background()
			sess, err := tt.mw(h).Connect(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if tt.firstMsg {
				first := cmp.Or(tt.first, `{"ticket":"`+tk+`"}`)
				if err := sess.Receive(ctx, c, canal.Text(first)); err != nil {
					t.Fatal(err)
				}
			}
			defer sess.Disconnect(ctx, c, canal.CloseNormal)
			if !c.Accepted() {
				t.Fatal("not accepted")
			}
			const n = 3
			for range n {
				if err := layer.GroupSend(ctx, "room", canal.Message{"type": "room.message", "text": "hi"}); err != nil {
					t.Fatal(err)
				}
			}
			frames, delivered := c.counts()
			switch {
			case tt.wantFrame && (frames != n || delivered != 0):
				t.Fatalf("%d frames through DeliverFrame, %d Deliver calls; want %d, 0", frames, delivered, n)
			case !tt.wantFrame && (frames != 0 || delivered != n):
				t.Fatalf("control: %d frames, %d Deliver calls; want 0, %d", frames, delivered, n)
			}
		})
	}
}
