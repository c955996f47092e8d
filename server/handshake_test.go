package server_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// TestHandshakeAndClose covers every row of the spec's handshake/close table, as a
// client on a real socket sees it.
func TestHandshakeAndClose(t *testing.T) {
	t.Parallel()
	accept := func(c canal.Conn) error { return c.Accept(canal.AcceptOptions{}) }
	tests := []struct {
		name           string
		connect        func(ctx context.Context, c canal.Conn) error
		wantStatus     int      // HTTP status of a refused handshake; 0 when accepted
		wantFrames     []string // frames before the close
		wantClose      int      // server's close code; 0 when the server does not close
		wantReason     string
		wantDisconnect int // code Disconnect gets; 0 when the handler made no session
	}{
		{name: "close before accept", connect: func(_ context.Context, c canal.Conn) error { return c.Close(canal.CloseNormal, "") },
			wantStatus: 403, wantDisconnect: canal.CloseAbnormal},
		{name: "deny with RejectError", connect: func(context.Context, canal.Conn) error { return canal.Reject(0, "no") },
			wantStatus: 403},
		{name: "reject with another status", connect: func(context.Context, canal.Conn) error { return canal.Reject(http.StatusUnauthorized, "who") },
			wantStatus: 401},
		{name: "error before accept", connect: func(context.Context, canal.Conn) error { return errors.New("boom") },
			wantStatus: 500},
		{name: "panic before accept", connect: func(context.Context, canal.Conn) error { panic("boom") },
			wantStatus: 500},
		{name: "never accepts", connect: func(context.Context, canal.Conn) error { return nil },
			wantStatus: 403, wantDisconnect: canal.CloseAbnormal},
		{name: "unoffered subprotocol", connect: func(_ context.Context, c canal.Conn) error {
			return c.Accept(canal.AcceptOptions{Subprotocol: "nope"})
		}, wantStatus: 500},
		{name: "error after accept", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			return errors.New("boom")
		}, wantClose: canal.CloseInternalError},
		{name: "CloseError after accept", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			return &canal.CloseError{Code: 4004}
		}, wantClose: 4004},
		{name: "close()", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			return c.Close(canal.CloseNormal, "")
		}, wantClose: 1000, wantDisconnect: 1000},
		{name: "close(4123) with reason", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			return c.Close(4123, "bye")
		}, wantClose: 4123, wantReason: "bye", wantDisconnect: 4123},
		{name: "send then close", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			_ = c.Send(canal.Text("hello"))
			return c.Close(canal.CloseNormal, "")
		}, wantFrames: []string{"hello"}, wantClose: 1000, wantDisconnect: 1000},
		{name: "send then close(4321)", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			_ = c.Send(canal.Text("hello"))
			return c.Close(4321, "")
		}, wantFrames: []string{"hello"}, wantClose: 4321, wantDisconnect: 4321},
		{name: "close(1001) allowed", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			return c.Close(canal.CloseGoingAway, "")
		}, wantClose: 1001, wantDisconnect: 1001},
		{name: "empty text frame is sent", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			_ = c.Send(canal.Text(""))
			return c.Close(canal.CloseNormal, "")
		}, wantFrames: []string{""}, wantClose: 1000, wantDisconnect: 1000},
		{name: "send before accept is refused", connect: func(_ context.Context, c canal.Conn) error {
			if err := c.Send(canal.Text("early")); !errors.Is(err, canal.ErrNotAccepted) {
				return err
			}
			_ = accept(c)
			return c.Close(canal.CloseNormal, "")
		}, wantClose: 1000, wantDisconnect: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			p.connect = tt.connect
			s := canaltest.NewServer(t, p, fastOptions())
			c, err := dial(t, s, "/ws/", canaltest.DialOptions{})
			if tt.wantStatus != 0 {
				var he *canaltest.HandshakeError
				if !errors.As(err, &he) || he.Status != tt.wantStatus {
					t.Fatalf("dial error %v, want HTTP %d", err, tt.wantStatus)
				}
			} else {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				for _, want := range tt.wantFrames {
					got, err := c.ReceiveText(ctxT(t))
					if err != nil || got != want {
						t.Fatalf("frame %q, %v; want %q", got, err, want)
					}
				}
				code, reason, err := c.ExpectClose(ctxT(t))
				if err != nil || code != tt.wantClose || reason != tt.wantReason {
					t.Fatalf("close %d %q, %v; want %d %q", code, reason, err, tt.wantClose, tt.wantReason)
				}
			}
			if tt.wantDisconnect != 0 {
				if got := p.waitDisconnect(t); got != tt.wantDisconnect {
					t.Fatalf("Disconnect(%d), want %d", got, tt.wantDisconnect)
				}
			}
		})
	}
}

func TestCloseCodeValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code int
		ok   bool
	}{
		{1000, true}, {1001, true}, {1003, true}, {1007, true}, {1008, true}, {1011, true}, {1013, true},
		{3000, true}, {4999, true},
		{999, false}, {1002, false}, {1004, false}, {1005, false}, {1006, false}, {1009, false},
		{1012, false}, {1015, false}, {2999, false}, {5000, false},
	}
	p := newProbe()
	results := make(chan error, len(tests))
	p.connect = func(_ context.Context, c canal.Conn) error {
		if err := c.Accept(canal.AcceptOptions{}); err != nil {
			return err
		}
		for _, tt := range tests {
			if tt.ok {
				continue // a valid code would close the connection
			}
			results <- c.Close(tt.code, "")
		}
		results <- c.Close(canal.CloseNormal, string(make([]byte, 124)))
		return nil
	}
	s := canaltest.NewServer(t, p, fastOptions())
	c := mustDial(t, s, "/", canaltest.DialOptions{})
	for _, tt := range tests {
		if tt.ok != canal.ValidAppCloseCode(tt.code) {
			t.Errorf("ValidAppCloseCode(%d) = %v, want %v", tt.code, !tt.ok, tt.ok)
		}
		if !tt.ok {
			if err := <-results; !errors.Is(err, canal.ErrInvalidCloseCode) {
				t.Errorf("Close(%d) = %v, want ErrInvalidCloseCode", tt.code, err)
			}
		}
	}
	if err := <-results; !errors.Is(err, canal.ErrInvalidCloseCode) {
		t.Errorf("Close with a 124-byte reason = %v, want ErrInvalidCloseCode", err)
	}
	if err := c.ExpectNothing(100e6); err != nil {
		t.Fatalf("refused closes must leave the socket open: %v", err)
	}
}

func TestSubprotocols(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		offer   []string
		choose  string
		want    string
		wantHdr bool
	}{
		{name: "plain accept sends no header", offer: []string{"b", "a"}, choose: "", want: "", wantHdr: false},
		{name: "chosen protocol is echoed", offer: []string{"b", "a"}, choose: "a", want: "a", wantHdr: true},
		{name: "first of the offer", offer: []string{"b", "a"}, choose: "b", want: "b", wantHdr: true},
		{name: "no offer, plain accept", offer: nil, choose: "", want: "", wantHdr: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			offered := make(chan []string, 1)
			p.connect = func(_ context.Context, c canal.Conn) error {
				offered <- c.Scope().Subprotocols
				return c.Accept(canal.AcceptOptions{Subprotocol: tt.choose, Header: http.Header{"X-Canal": {"yes"}}})
			}
			s := canaltest.NewServer(t, p, fastOptions())
			c := mustDial(t, s, "/", canaltest.DialOptions{Subprotocols: tt.offer})
			if got := <-offered; !slices.Equal(got, tt.offer) {
				t.Errorf("scope subprotocols %q, want %q in the client's order", got, tt.offer)
			}
			if c.Subprotocol != tt.want {
				t.Errorf("subprotocol %q, want %q", c.Subprotocol, tt.want)
			}
			if _, ok := c.Header["Sec-Websocket-Protocol"]; ok != tt.wantHdr {
				t.Errorf("Sec-WebSocket-Protocol header present = %v, want %v", ok, tt.wantHdr)
			}
			if c.Header.Get("X-Canal") != "yes" {
				t.Errorf("extra accept header missing: %v", c.Header)
			}
		})
	}
}
