package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
)

// recorder is an Observer that keeps what it is told, durations aside.
type recorder struct {
	mu     sync.Mutex
	hs     []server.HandshakeInfo
	closes []server.CloseInfo
}

func (r *recorder) Handshake(h server.HandshakeInfo) {
	if h.Duration < 0 {
		h.Status = -1 // shows up in the comparison
	}
	h.Duration = 0
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hs = append(r.hs, h)
}

func (r *recorder) Closed(c server.CloseInfo) {
	if c.Duration < 0 {
		c.Code = -1
	}
	c.Duration = 0
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closes = append(r.closes, c)
}

func (r *recorder) snapshot() ([]server.HandshakeInfo, []server.CloseInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hs), slices.Clone(r.closes)
}

// waitCloses waits until r was told of n closes, failing after a bound.
func (r *recorder) waitCloses(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, got := r.snapshot(); len(got) >= n {
			return
		}
	}
	t.Fatalf("fewer than %d closes reported", n)
}

// check shuts s down (every Closed is reported before Shutdown returns; every
// refusal before its answer goes out), then compares everything r was told.
func (r *recorder) check(t *testing.T, s *canaltest.Server, hs []server.HandshakeInfo, closes []server.CloseInfo) {
	t.Helper()
	// An accepted handshake is reported right after its 101 went out: wait for it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got, _ := r.snapshot(); len(got) >= len(hs) {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	gotH, gotC := r.snapshot()
	if !slices.Equal(gotH, hs) {
		t.Errorf("handshakes:\n got %+v\nwant %+v", gotH, hs)
	}
	if !slices.Equal(gotC, closes) {
		t.Errorf("closes:\n got %+v\nwant %+v", gotC, closes)
	}
}

const obsRoute = "ws/<str:room>/"

func observed(t *testing.T, p *probe, o server.Options) (*canaltest.Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	o.Observer = rec
	return canaltest.NewServer(t, router.Must(router.Path(obsRoute, p)), o), rec
}

func accepted(transport string) server.HandshakeInfo {
	status := http.StatusSwitchingProtocols
	if transport == server.ScopeTypeSSE {
		status = http.StatusOK
	}
	return server.HandshakeInfo{Route: obsRoute, Transport: transport, Outcome: server.Accepted, Status: status}
}

func closed(transport string, code int) server.CloseInfo {
	return server.CloseInfo{Route: obsRoute, Transport: transport, Code: code}
}

// TestObserverHandshakes: one Handshake per request with the outcome and status the
// client saw, and one Closed per accepted connection with the code Disconnect got.
func TestObserverHandshakes(t *testing.T) {
	t.Parallel()
	const ws = "websocket"
	accept := func(c canal.Conn) error { return c.Accept(canal.AcceptOptions{}) }
	refused := func(route string, o server.Outcome, status int) server.HandshakeInfo {
		return server.HandshakeInfo{Route: route, Transport: ws, Outcome: o, Status: status}
	}
	tests := []struct {
		name    string
		path    string
		origin  string
		connect func(ctx context.Context, c canal.Conn) error
		client  func(t *testing.T, c *canaltest.Communicator) // after an accepted handshake, before shutdown
		status  int                                           // the refusal the client sees; 0 when accepted
		hs      []server.HandshakeInfo
		closes  []server.CloseInfo
	}{
		{name: "client closes 1000", client: func(t *testing.T, c *canaltest.Communicator) {
			if err := c.Close(canal.CloseNormal); err != nil {
				t.Fatal(err)
			}
		}, hs: []server.HandshakeInfo{accepted(ws)}, closes: []server.CloseInfo{closed(ws, 1000)}},
		{name: "server closes 4001", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			return c.Close(4001, "")
		}, client: func(t *testing.T, c *canaltest.Communicator) {
			if code, _, err := c.ExpectClose(ctxT(t)); err != nil || code != 4001 {
				t.Fatalf("close %d, %v", code, err)
			}
		}, hs: []server.HandshakeInfo{accepted(ws)}, closes: []server.CloseInfo{closed(ws, 4001)}},
		{name: "error after accept", connect: func(_ context.Context, c canal.Conn) error {
			_ = accept(c)
			return errors.New("boom")
		}, client: func(t *testing.T, c *canaltest.Communicator) {
			if code, _, err := c.ExpectClose(ctxT(t)); err != nil || code != 1011 {
				t.Fatalf("close %d, %v", code, err)
			}
		}, hs: []server.HandshakeInfo{accepted(ws)}, closes: []server.CloseInfo{closed(ws, 1011)}},
		{name: "open at shutdown", hs: []server.HandshakeInfo{accepted(ws)}, closes: []server.CloseInfo{closed(ws, 1001)}},
		{name: "reject 403", connect: func(context.Context, canal.Conn) error { return canal.Reject(0, "no") },
			status: 403, hs: []server.HandshakeInfo{refused(obsRoute, server.Rejected, 403)}},
		{name: "reject 401", connect: func(context.Context, canal.Conn) error { return canal.Reject(401, "who") },
			status: 401, hs: []server.HandshakeInfo{refused(obsRoute, server.Rejected, 401)}},
		{name: "never accepts", connect: func(context.Context, canal.Conn) error { return nil },
			status: 403, hs: []server.HandshakeInfo{refused(obsRoute, server.Rejected, 403)}},
		{name: "error", connect: func(context.Context, canal.Conn) error { return errors.New("boom") },
			status: 500, hs: []server.HandshakeInfo{refused(obsRoute, server.Failed, 500)}},
		{name: "panic", connect: func(context.Context, canal.Conn) error { panic("boom") },
			status: 500, hs: []server.HandshakeInfo{refused(obsRoute, server.Failed, 500)}},
		{name: "no route", path: "/nowhere/", status: 404, hs: []server.HandshakeInfo{refused("", server.Rejected, 404)}},
		{name: "other site", origin: "https://evil.example", status: 403, hs: []server.HandshakeInfo{refused("", server.Rejected, 403)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			p.connect = tt.connect
			s, rec := observed(t, p, fastOptions())
			path := tt.path
			if path == "" {
				path = "/ws/lobby/"
			}
			c, err := dial(t, s, path, canaltest.DialOptions{Origin: tt.origin})
			var he *canaltest.HandshakeError
			switch {
			case tt.status != 0:
				if !errors.As(err, &he) || he.Status != tt.status {
					t.Fatalf("dial: %v, want HTTP %d", err, tt.status)
				}
			case err != nil:
				t.Fatalf("dial: %v", err)
			case tt.client != nil:
				tt.client(t, c)
				// The close is reported once the server has run Disconnect: wait for
				// it, or Shutdown would close with 1001 first.
				rec.waitCloses(t, len(tt.closes))
			}
			rec.check(t, s, tt.hs, tt.closes)
		})
	}
}

// TestObserverBadRequest: a malformed upgrade is a rejection (400) before routing.
func TestObserverBadRequest(t *testing.T) {
	t.Parallel()
	s, rec := observed(t, newProbe(), fastOptions())
	req, err := http.NewRequest(http.MethodGet, s.HTTPURL("/ws/lobby/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13") // and no Sec-WebSocket-Key
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	rec.check(t, s, []server.HandshakeInfo{{Transport: "websocket", Outcome: server.Rejected, Status: 400}}, nil)
}

// TestObserverEventStream: streams are reported as transport "sse", opened with 200;
// a client that goes away is a 1001.
func TestObserverEventStream(t *testing.T) {
	t.Parallel()
	o := fastOptions()
	o.EventStreams = true
	p := newProbe()
	s, rec := observed(t, p, o)
	es, err := canaltest.DialEvents(ctxT(t), s.HTTPURL("/ws/lobby/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.lastConn(t)
	es.Close()
	if code := p.waitDisconnect(t); code != canal.CloseGoingAway {
		t.Fatalf("Disconnect(%d), want 1001", code)
	}
	rec.check(t, s, []server.HandshakeInfo{accepted(server.ScopeTypeSSE)}, []server.CloseInfo{closed(server.ScopeTypeSSE, 1001)})
}

// TestObserverSlowConsumer: a client that does not read is dropped, and the close is
// reported with 1013, as Stats counts it.
func TestObserverSlowConsumer(t *testing.T) {
	t.Parallel()
	o := fastOptions()
	o.SendBuffer = 64 << 10
	o.PingInterval, o.PongTimeout = 10*time.Second, 10*time.Second // silence must not end it first
	p := newProbe()
	s, rec := observed(t, p, o)
	raw := dialNoRead(t, s.Addr, "/ws/lobby/") // never read past the 101
	fd := p.lastConn(t).(canal.FrameDeliverer)
	f := canal.Frame{Data: bytes.Repeat([]byte("x"), 64<<10)}
	msg := canal.Message{"type": "room.message"}
	dropped := false
	for i := 0; i < 4000 && !dropped; i++ { // 256 MB at most; the kernel's buffers hold a few
		if !fd.DeliverFrame(msg, f) {
			time.Sleep(time.Millisecond)
		}
		select {
		case code := <-p.disconnect:
			if code != canal.CloseTryAgainLater {
				t.Fatalf("Disconnect(%d), want 1013", code)
			}
			dropped = true
		default:
		}
	}
	if !dropped {
		t.Fatal("the client that does not read was not dropped")
	}
	raw.Close()
	if n := s.Stats().SlowConsumers; n != 1 {
		t.Fatalf("Stats.SlowConsumers = %d, want 1", n)
	}
	rec.check(t, s, []server.HandshakeInfo{accepted("websocket")}, []server.CloseInfo{closed("websocket", 1013)})
}

// dialNoRead opens a WebSocket by hand and reads nothing but the 101's head.
func dialNoRead(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_, err = nc.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReaderSize(nc, 16) // reads little past the head
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return nc
}

// TestStatsFramesAndBounds: Stats counts messages both ways and shows the bounds in
// force.
func TestStatsFramesAndBounds(t *testing.T) {
	t.Parallel()
	o := fastOptions()
	o.SessionWorkers, o.MaxBufferedBytes, o.MaxConnections = 32, 8<<20, 100
	p := newProbe()
	p.connect = func(_ context.Context, c canal.Conn) error {
		if err := c.Accept(canal.AcceptOptions{}); err != nil {
			return err
		}
		return c.Send(canal.Text("hello")) // goes out with the 101
	}
	s := canaltest.NewServer(t, p, o)
	c := mustDial(t, s, "/", canaltest.DialOptions{})
	for _, m := range []string{"a", "b", "c"} {
		if err := c.SendText(m); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 { // the greeting and three echoes
		if _, err := c.Receive(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Received != 3 || st.Sent != 4 {
		t.Errorf("Received %d, Sent %d; want 3, 4", st.Received, st.Sent)
	}
	if st.MaxSessionWorkers != 32 || st.MaxBuffered != 8<<20 || st.MaxConns != 100 {
		t.Errorf("bounds %d %d %d; want 32 %d 100", st.MaxSessionWorkers, st.MaxBuffered, st.MaxConns, 8<<20)
	}
}

// TestStatsShed: Stats shows the sockets Listener holds against MaxConnections, and
// counts the connections answered 503 past it (which never reach a handshake, so
// the Observer hears nothing of them).
func TestStatsShed(t *testing.T) {
	t.Parallel()
	o := fastOptions()
	o.MaxConnections = 1
	s, rec := observed(t, newProbe(), o)
	mustDial(t, s, "/ws/lobby/", canaltest.DialOptions{})
	var he *canaltest.HandshakeError
	if _, err := dial(t, s, "/ws/lobby/", canaltest.DialOptions{}); !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("second socket: %v, want HTTP 503", err)
	}
	if st := s.Stats(); st.Sockets != 1 || st.Shed != 1 || st.Conns != 1 || st.MaxConns != 1 {
		t.Fatalf("Sockets %d, Shed %d, Conns %d, MaxConns %d; want 1, 1, 1, 1", st.Sockets, st.Shed, st.Conns, st.MaxConns)
	}
	rec.check(t, s, []server.HandshakeInfo{accepted("websocket")}, []server.CloseInfo{closed("websocket", 1001)})
}
