package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/server"
)

func sseOptions() server.Options {
	o := fastOptions()
	o.EventStreams = true
	return o
}

func dialEvents(t *testing.T, s *canaltest.Server, path string, opts canaltest.DialOptions) *canaltest.EventStream {
	t.Helper()
	es, err := canaltest.DialEvents(ctxT(t), s.HTTPURL(path), opts)
	if err != nil {
		t.Fatalf("event stream %s: %v", path, err)
	}
	t.Cleanup(es.Close)
	return es
}

func nextEvent(t *testing.T, es *canaltest.EventStream) canaltest.Event {
	t.Helper()
	ev, err := es.Next(ctxT(t))
	if err != nil {
		t.Fatalf("next event: %v", err)
	}
	return ev
}

// TestEventStream: a stream runs the same handler as a socket: Connect sees Scope.Type
// "sse", Accept answers 200 with the event-stream headers (CORS for the accepted
// origin), frames become events line by line, layer events arrive in order.
func TestEventStream(t *testing.T) {
	t.Parallel()
	p := newProbe()
	var typ atomic.Value
	p.connect = func(_ context.Context, c canal.Conn) error {
		typ.Store(c.Scope().Type)
		if err := c.Accept(canal.AcceptOptions{Header: http.Header{"X-Room": {"lobby"}}}); err != nil {
			return err
		}
		return c.Send(canal.Text("hello"))
	}
	p.event = func(_ context.Context, c canal.Conn, m canal.Message) error {
		return c.Send(canal.Text(m.String("text")))
	}
	o := sseOptions()
	o.Origins = []string{"https://app.example.com"} // the page is on another origin
	s := canaltest.NewServer(t, p, o)
	es := dialEvents(t, s, "/events/", canaltest.DialOptions{Origin: "https://app.example.com"})
	conn := p.lastConn(t)

	if got := typ.Load(); got != server.ScopeTypeSSE {
		t.Fatalf("Scope.Type = %v, want %q", got, server.ScopeTypeSSE)
	}
	for k, want := range map[string]string{
		"Content-Type":                     "text/event-stream; charset=utf-8",
		"Cache-Control":                    "no-cache",
		"X-Room":                           "lobby",
		"Access-Control-Allow-Origin":      "https://app.example.com",
		"Access-Control-Allow-Credentials": "true",
	} {
		if got := es.Header.Get(k); got != want {
			t.Fatalf("%s: %q, want %q", k, got, want)
		}
	}
	if ev := nextEvent(t, es); ev != (canaltest.Event{Data: "hello"}) {
		t.Fatalf("first event %+v", ev)
	}
	for _, text := range []string{"one", "two\nlines", "crlf\r\nand\rcr", `{"json":true}`} {
		if !conn.Deliver(canal.Message{"type": "t", "text": text}) {
			t.Fatal("Deliver refused")
		}
	}
	for _, want := range []string{"one", "two\nlines", "crlf\nand\ncr", `{"json":true}`} {
		if ev := nextEvent(t, es); ev.Data != want || ev.Name != "" {
			t.Fatalf("event %+v, want data %q", ev, want)
		}
	}
	if err := conn.Send(canal.Frame{Binary: true, Data: []byte{1}}); !errors.Is(err, server.ErrTextOnly) {
		t.Fatalf("binary Send: %v, want ErrTextOnly", err)
	}
}

// TestEventStreamEnds: Close sends a last "close" event with the code and ends the
// stream; a client that goes away gives Disconnect(1001); a refusal before Accept is an
// HTTP status; without EventStreams the request is plain HTTP.
func TestEventStreamEnds(t *testing.T) {
	t.Parallel()
	t.Run("server closes", func(t *testing.T) {
		t.Parallel()
		p := newProbe()
		s := canaltest.NewServer(t, p, sseOptions())
		es := dialEvents(t, s, "/", canaltest.DialOptions{})
		conn := p.lastConn(t)
		if err := conn.Send(canal.Text("bye soon")); err != nil {
			t.Fatal(err)
		}
		if err := conn.Close(4403, "logged out"); err != nil {
			t.Fatal(err)
		}
		if ev := nextEvent(t, es); ev.Data != "bye soon" {
			t.Fatalf("event %+v: queued frames must go out before the close", ev)
		}
		ev := nextEvent(t, es)
		var body struct {
			Code   int
			Reason string
		}
		if ev.Name != "close" || json.Unmarshal([]byte(ev.Data), &body) != nil || body.Code != 4403 || body.Reason != "logged out" {
			t.Fatalf("close event %+v", ev)
		}
		if _, err := es.Next(ctxT(t)); !errors.Is(err, io.EOF) {
			t.Fatalf("after the close event: %v, want the stream to end (EOF)", err)
		}
		if got := p.waitDisconnect(t); got != 4403 {
			t.Fatalf("Disconnect(%d), want 4403", got)
		}
	})
	t.Run("client goes away", func(t *testing.T) {
		t.Parallel()
		p := newProbe()
		s := canaltest.NewServer(t, p, sseOptions())
		es := dialEvents(t, s, "/", canaltest.DialOptions{})
		p.lastConn(t)
		es.Close()
		if got := p.waitDisconnect(t); got != canal.CloseGoingAway {
			t.Fatalf("Disconnect(%d), want %d", got, canal.CloseGoingAway)
		}
	})
	t.Run("refused before accept", func(t *testing.T) {
		t.Parallel()
		p := newProbe()
		p.connect = func(context.Context, canal.Conn) error { return canal.Reject(http.StatusForbidden, "no") }
		s := canaltest.NewServer(t, p, sseOptions())
		_, err := canaltest.DialEvents(ctxT(t), s.HTTPURL("/"), canaltest.DialOptions{})
		var he *canaltest.HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusForbidden {
			t.Fatalf("DialEvents: %v, want HTTP 403", err)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		t.Parallel()
		p := newProbe()
		s := canaltest.NewServer(t, p, fastOptions())
		_, err := canaltest.DialEvents(ctxT(t), s.HTTPURL("/"), canaltest.DialOptions{})
		var he *canaltest.HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusNotFound {
			t.Fatalf("DialEvents without EventStreams: %v, want the app's 404", err)
		}
	})
}

// TestEventStreamKeepalive: an idle stream gets comment lines every PingInterval, so
// proxies keep it open and a dead client is found by the failed write.
func TestEventStreamKeepalive(t *testing.T) {
	t.Parallel()
	o := sseOptions()
	o.PingInterval = 50 * time.Millisecond
	s := canaltest.NewServer(t, newProbe(), o)
	es := dialEvents(t, s, "/", canaltest.DialOptions{})
	deadline := time.Now().Add(5 * time.Second)
	for es.Comments() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d pings in 5 s at a 50 ms interval", es.Comments())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventStreamConsumer: Channels' complaint that HTTP consumers cannot receive
// layer events. The same consumer serves a WebSocket and an event stream, and a
// group message reaches both.
func TestEventStreamConsumer(t *testing.T) {
	t.Parallel()
	h, layer := newsConsumer(t)
	s := canaltest.NewServer(t, h, sseOptions())
	es := dialEvents(t, s, "/news/", canaltest.DialOptions{})
	ws := mustDial(t, s, "/news/", canaltest.DialOptions{})
	// Groups are joined before the accept, so both are members once dialed.
	if err := layer.GroupSend(ctxT(t), "news", canal.Message{"type": "news.item", "title": "go"}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, es); ev.Data != `{"title":"go"}` {
		t.Fatalf("stream got %+v", ev)
	}
	if got, err := ws.ReceiveText(ctxT(t)); err != nil || got != `{"title":"go"}` {
		t.Fatalf("socket got %q, %v", got, err)
	}
}

// newsConsumer is a consumer in the group "news" whose "news.item" events become
// {"title": ...} frames, on a memory layer.
func newsConsumer(t *testing.T) (canal.Handler, canal.Layer) {
	t.Helper()
	layer, err := layers.NewMemory(layers.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = layer.Close(context.Background()) })
	h, err := consumer.New(func() struct{} { return struct{}{} }, consumer.Options[struct{}]{
		Layer:  layer,
		Groups: []string{"news"},
		Frames: map[string]consumer.FrameFunc{
			"news.item": consumer.JSONFrame(func(m canal.Message) any { return map[string]any{"title": m["title"]} }),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, layer
}

// TestEventStreamBinaryFrames: a binary frame for a stream is a session error, whether
// it comes from a handler or from a group event's ready frame: logged, closed with 1011.
func TestEventStreamBinaryFrames(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"handler", "ready frame"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			p.event = func(_ context.Context, c canal.Conn, m canal.Message) error {
				return c.Send(canal.Frame{Binary: true, Data: []byte{1}})
			}
			s := canaltest.NewServer(t, p, sseOptions())
			es := dialEvents(t, s, "/", canaltest.DialOptions{})
			conn := p.lastConn(t)
			msg := canal.Message{"type": "t"}
			if path == "handler" {
				conn.Deliver(msg)
			} else {
				conn.(canal.FrameDeliverer).DeliverFrame(msg, canal.Frame{Binary: true, Data: []byte{1}})
			}
			if ev := nextEvent(t, es); ev.Name != "close" || ev.Data != `{"code":1011,"reason":""}` {
				t.Fatalf("event %+v, want the close event with 1011", ev)
			}
			if got := p.waitDisconnect(t); got != canal.CloseInternalError {
				t.Fatalf("Disconnect(%d), want 1011", got)
			}
		})
	}
}
