package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fws "github.com/fasthttp/websocket"
	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/server"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		os.Exit(runChild(url)) // a server process of the two-process tests
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newLayer(t *testing.T) canal.Layer {
	l, err := layers.NewMemory(layers.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func serve(t *testing.T, h canal.Handler) *canaltest.Server {
	return canaltest.NewServer(t, h, server.Options{Logger: quiet, CloseTimeout: 500 * time.Millisecond})
}

func dial(t *testing.T, s *canaltest.Server) *canaltest.Communicator {
	t.Helper()
	c, err := canaltest.Dial(ctxT(t), s.URL("/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Abort)
	return c
}

// jsonEcho echoes decoded JSON and reports every event it gets.
type jsonEcho struct{ events chan canal.Message }

func (e *jsonEcho) ReceiveJSON(_ context.Context, c *consumer.Conn, content json.RawMessage) error {
	return c.SendText("json:" + string(content))
}

func (e *jsonEcho) Event(_ context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendText("event:" + m.Type())
}

func TestJSONInput(t *testing.T) {
	t.Parallel()
	replyAndStay := func(_ context.Context, c *consumer.Conn, _ canal.Frame, err error) error {
		return c.SendJSON(map[string]string{"error": err.Error()})
	}
	tests := []struct {
		name      string
		onInvalid func(context.Context, *consumer.Conn, canal.Frame, error) error
		send      func(c *canaltest.Communicator) error
		wantText  string // reply expected, or "" when a close is expected
		wantClose int
	}{
		{name: "valid JSON", send: func(c *canaltest.Communicator) error { return c.SendText(`{"a":1}`) }, wantText: `json:{"a":1}`},
		{name: "invalid JSON closes 1007", send: func(c *canaltest.Communicator) error { return c.SendText(`{"a":`) }, wantClose: canal.CloseInvalidPayload},
		{name: "empty text closes 1007", send: func(c *canaltest.Communicator) error { return c.SendText("") }, wantClose: canal.CloseInvalidPayload},
		{name: "binary closes 1003", send: func(c *canaltest.Communicator) error { return c.SendBytes([]byte("{}")) }, wantClose: canal.CloseUnsupportedData},
		{name: "OnInvalid replies and keeps the socket", onInvalid: replyAndStay,
			send: func(c *canaltest.Communicator) error { return c.SendText("nope") }, wantText: `{"error":"consumer: invalid JSON"}`},
		{name: "OnInvalid on binary", onInvalid: replyAndStay,
			send:     func(c *canaltest.Communicator) error { return c.SendRaw(fws.BinaryMessage, []byte{1}) },
			wantText: `{"error":"consumer: binary frame sent to a JSON consumer"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := consumer.New(func() *jsonEcho { return &jsonEcho{} }, consumer.Options[*jsonEcho]{OnInvalid: tt.onInvalid, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, serve(t, h))
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			if tt.wantClose != 0 {
				code, _, err := c.ExpectClose(ctxT(t))
				if err != nil || code != tt.wantClose {
					t.Fatalf("close %d, %v; want %d", code, err, tt.wantClose)
				}
				return
			}
			got, err := c.ReceiveText(ctxT(t))
			if err != nil || got != tt.wantText {
				t.Fatalf("got %q, %v; want %q", got, err, tt.wantText)
			}
			// The socket is still usable.
			if err := c.SendText(`[1]`); err != nil {
				t.Fatal(err)
			}
			if got, err := c.ReceiveText(ctxT(t)); err != nil || got != "json:[1]" {
				t.Fatalf("after: got %q, %v", got, err)
			}
		})
	}
}

// raw receives frames of both kinds.
type raw struct{}

func (raw) Receive(_ context.Context, c *consumer.Conn, f canal.Frame) error {
	kind := "text:"
	if f.Binary {
		kind = "binary:"
	}
	return c.SendText(kind + string(f.Data))
}

func TestReceiverGetsTextAndBinary(t *testing.T) {
	t.Parallel()
	h, err := consumer.New(func() raw { return raw{} }, consumer.Options[raw]{})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, serve(t, h))
	_ = c.SendText("a")
	_ = c.SendBytes([]byte("b"))
	for _, want := range []string{"text:a", "binary:b"} {
		if got, err := c.ReceiveText(ctxT(t)); err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
}

// dispatcher has a registered handler for "chat.message" and an Event fallback.
type dispatcher struct{ jsonEcho }

func (d *dispatcher) ChatMessage(_ context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendText("chat:" + m.String("text"))
}

func TestEventDispatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		msg       canal.Message
		want      string // frame the client gets; "" means none
		wantClose int
	}{
		{name: "registered type", msg: canal.Message{"type": "chat.message", "text": "hi"}, want: "chat:hi"},
		{name: "unregistered type goes to Event", msg: canal.Message{"type": "other.thing"}, want: "event:other.thing"},
		{name: "websocket.receive is a client frame", msg: canal.Message{"type": "websocket.receive", "text": `{"x":true}`}, want: `json:{"x":true}`},
		{name: "missing type is dropped", msg: canal.Message{"text": "x"}},
		{name: "private type is dropped", msg: canal.Message{"type": "_secret"}},
		{name: "dot type is dropped", msg: canal.Message{"type": ".secret"}},
		{name: "websocket.close closes with its code", msg: canal.Message{"type": "websocket.close", "code": int64(4003)}, wantClose: 4003},
		{name: "websocket.disconnect defaults to 1000", msg: canal.Message{"type": "websocket.disconnect"}, wantClose: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			layer := &captureLayer{Layer: newLayer(t), delivers: make(chan func(canal.Message) bool, 1)}
			h, err := consumer.New(func() *dispatcher { return &dispatcher{} }, consumer.Options[*dispatcher]{
				Layer:  layer,
				Events: map[string]consumer.EventFunc[*dispatcher]{"chat.message": (*dispatcher).ChatMessage},
				Logger: quiet,
			})
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, serve(t, h))
			// Deliver as any layer would, including messages a hostile peer put in Redis
			// that a well-behaved layer would refuse to send.
			if !(<-layer.delivers)(tt.msg) {
				t.Fatal("delivery refused")
			}
			switch {
			case tt.wantClose != 0:
				code, _, err := c.ExpectClose(ctxT(t))
				if err != nil || code != tt.wantClose {
					t.Fatalf("close %d, %v; want %d", code, err, tt.wantClose)
				}
			case tt.want != "":
				if got, err := c.ReceiveText(ctxT(t)); err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
			default:
				if err := c.ExpectNothing(200 * time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// captureLayer hands out the delivery callback of each attached consumer.
type captureLayer struct {
	canal.Layer
	delivers chan func(canal.Message) bool
}

func (l *captureLayer) Attach(ctx context.Context, prefix string, deliver func(canal.Message) bool) (string, func(), error) {
	l.delivers <- deliver
	return l.Layer.Attach(ctx, prefix, deliver)
}

// spyLayer records group membership calls, in order with the consumer's hooks.
type spyLayer struct {
	canal.Layer
	mu  sync.Mutex
	log []string
}

func (s *spyLayer) note(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, e)
}

func (s *spyLayer) entries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func (s *spyLayer) GroupAdd(ctx context.Context, g, ch string) error {
	s.note("add " + g)
	return s.Layer.GroupAdd(ctx, g, ch)
}

func (s *spyLayer) GroupDiscard(ctx context.Context, g, ch string) error {
	s.note("discard " + g)
	return s.Layer.GroupDiscard(ctx, g, ch)
}

type lifecycle struct{ spy *spyLayer }

func (l *lifecycle) Connect(ctx context.Context, c *consumer.Conn) error {
	l.spy.note("connect")
	if err := c.GroupAdd(ctx, "dynamic"); err != nil {
		return err
	}
	return c.Accept()
}

func (l *lifecycle) Disconnect(_ context.Context, c *consumer.Conn, code int) {
	l.spy.note("disconnect")
}

func TestGroupsJoinedAndLeft(t *testing.T) {
	t.Parallel()
	spy := &spyLayer{Layer: newLayer(t)}
	h, err := consumer.New(func() *lifecycle { return &lifecycle{spy: spy} }, consumer.Options[*lifecycle]{
		Layer: spy, Groups: []string{"static"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, h)
	c := dial(t, s)
	// Membership is real: a group message reaches the consumer (Event is absent, so it
	// is dropped, but Deliver saw it); close and check the order of operations.
	_ = c.Close(1000)
	deadline := time.Now().Add(5 * time.Second)
	want := []string{"add static", "connect", "add dynamic", "discard static", "discard dynamic", "disconnect"}
	for !slices.Equal(spy.entries(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("operations %q, want %q", spy.entries(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// downLayer fails every call as an unreachable Redis would.
type downLayer struct{ canal.Layer }

func (downLayer) Attach(context.Context, string, func(canal.Message) bool) (string, func(), error) {
	return "", nil, canal.ErrUnavailable
}

func TestLayerDownRefusesWith503(t *testing.T) {
	t.Parallel()
	h, err := consumer.New(func() raw { return raw{} }, consumer.Options[raw]{Layer: downLayer{}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, h)
	_, err = canaltest.Dial(ctxT(t), s.URL("/"), canaltest.DialOptions{})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != 503 {
		t.Fatalf("dial: %v, want 503", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	l := newLayer(t)
	ok := func(raw, context.Context, *consumer.Conn, canal.Message) error { return nil }
	tests := []struct {
		name    string
		factory func() raw
		opts    consumer.Options[raw]
		wantErr error
	}{
		{"nil factory", nil, consumer.Options[raw]{}, nil},
		{"groups without layer", func() raw { return raw{} }, consumer.Options[raw]{Groups: []string{"g"}}, consumer.ErrNoLayer},
		{"events without layer", func() raw { return raw{} }, consumer.Options[raw]{Events: map[string]consumer.EventFunc[raw]{"a.b": ok}}, consumer.ErrNoLayer},
		{"private event type", func() raw { return raw{} }, consumer.Options[raw]{Layer: l, Events: map[string]consumer.EventFunc[raw]{"_a": ok}}, canal.ErrInvalidMessage},
		{"nil event handler", func() raw { return raw{} }, consumer.Options[raw]{Layer: l, Events: map[string]consumer.EventFunc[raw]{"a.b": nil}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := consumer.New(tt.factory, tt.opts)
			if err == nil {
				t.Fatal("New accepted invalid options")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// framed has no hooks: its group events go through Options.Frames.
type framed struct{}

func TestFramesEncodeOncePerMessage(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	var builds atomic.Int32
	h, err := consumer.New(func() framed { return framed{} }, consumer.Options[framed]{
		Layer:  layer,
		Groups: []string{"room"},
		Frames: map[string]consumer.FrameFunc{
			"room.message": consumer.JSONFrame(func(m canal.Message) any {
				builds.Add(1)
				return map[string]any{"text": m["text"]}
			}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, h)
	const members = 20
	clients := make([]*canaltest.Communicator, members)
	for i := range clients {
		clients[i] = dial(t, s)
	}
	for _, text := range []string{"one", "two"} {
		if err := layer.GroupSend(ctxT(t), "room", canal.Message{"type": "room.message", "text": text}); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			if got, err := c.ReceiveText(ctxT(t)); err != nil || got != `{"text":"`+text+`"}` {
				t.Fatalf("got %q, %v", got, err)
			}
		}
	}
	// Concurrent consumers may race to build the same frame; far fewer than one build
	// per member must happen.
	if n := builds.Load(); n < 2 || n > 2*4 {
		t.Fatalf("%d builds for 2 messages to %d members", n, members)
	}
}

func TestFramesAndEventsExclusive(t *testing.T) {
	t.Parallel()
	ok := func(framed, context.Context, *consumer.Conn, canal.Message) error { return nil }
	_, err := consumer.New(func() framed { return framed{} }, consumer.Options[framed]{
		Layer:  newLayer(t),
		Events: map[string]consumer.EventFunc[framed]{"a.b": ok},
		Frames: map[string]consumer.FrameFunc{"a.b": consumer.JSONFrame(func(canal.Message) any { return 1 })},
	})
	if err == nil {
		t.Fatal("a type in both Events and Frames was accepted")
	}
}
