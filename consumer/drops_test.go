package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
)

// layerKinds are the layers a group message can travel through: in memory, and
// Redis' group_send (msgpack carries NaN, as channels_redis does from Django).
var layerKinds = []struct {
	name string
	make func(t *testing.T) canal.Layer
}{
	{"memory", newLayer},
	{"redis", func(t *testing.T) canal.Layer {
		srv := canaltest.StartRedis(t)
		l, err := layers.NewRedis(context.Background(), layers.RedisOptions{Hosts: []string{srv.URL()}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close(context.Background()) })
		return l
	}},
}

const secret = "SECRET-PAYLOAD"

// dialN opens n sockets to s.
func dialN(t *testing.T, s *canaltest.Server, n int) []*canaltest.Communicator {
	cs := make([]*canaltest.Communicator, n)
	for i := range cs {
		cs[i] = dial(t, s)
	}
	return cs
}

// sendBadThenGood group-sends a message that cannot be encoded, then a good one, and
// checks that every member gets the good one only, with its socket still open.
func sendBadThenGood(t *testing.T, layer canal.Layer, clients []*canaltest.Communicator, bad canal.Message) {
	t.Helper()
	if err := layer.GroupSend(ctxT(t), "room", bad); err != nil {
		t.Fatal(err)
	}
	if err := layer.GroupSend(ctxT(t), "room", canal.Message{"type": "room.message", "text": "after"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		got, err := c.ReceiveText(ctxT(t))
		if err != nil || got != `{"text":"after"}` {
			t.Fatalf("member %d: got %q, %v; want the good message only, socket open", i, got, err)
		}
	}
}

// TestBadFrameSkipped: a message whose frame cannot be built (NaN, ±Inf in a JSONFrame;
// any FrameFunc error) is skipped for every member, counted once, logged once without
// its contents; no socket is closed.
func TestBadFrameSkipped(t *testing.T) {
	t.Parallel()
	builders := []struct {
		name  string
		frame consumer.FrameFunc
		bad   canal.Message
	}{
		{"NaN", consumer.JSONFrame(func(m canal.Message) any { return map[string]any{"text": m["text"]} }),
			canal.Message{"type": "room.message", "text": math.NaN(), "s": secret}},
		{"+Inf", consumer.JSONFrame(func(m canal.Message) any { return map[string]any{"text": m["text"]} }),
			canal.Message{"type": "room.message", "text": math.Inf(1), "s": secret}},
		{"FrameFunc error", func(m canal.Message) (canal.Frame, error) {
			if m["bad"] == true {
				return canal.Frame{}, errors.New("frame: refusing this message")
			}
			return consumer.JSONFrame(func(m canal.Message) any { return map[string]any{"text": m["text"]} })(m)
		}, canal.Message{"type": "room.message", "bad": true, "s": secret}},
	}
	for _, lk := range layerKinds {
		for _, b := range builders {
			t.Run(lk.name+"/"+b.name, func(t *testing.T) {
				t.Parallel()
				layer := lk.make(t)
				var logs canaltest.LogBuffer
				h, err := consumer.New(func() framed { return framed{} }, consumer.Options[framed]{
					Layer: layer, Groups: []string{"room"}, Logger: logs.Logger(),
					Frames: map[string]consumer.FrameFunc{"room.message": b.frame},
				})
				if err != nil {
					t.Fatal(err)
				}
				sendBadThenGood(t, layer, dialN(t, serve(t, h), 3), b.bad)
				if st := h.Stats(); st.BadFrames != 1 {
					t.Errorf("stats %+v; want BadFrames 1 for one bad message to 3 members", st)
				}
				if n := len(logs.Lines("frame cannot be built")); n != 1 {
					t.Errorf("%d log lines; want 1:\n%s", n, logs.String())
				}
				if out := logs.String(); strings.Contains(out, secret) || !strings.Contains(out, "type=room.message") {
					t.Errorf("log shows the payload or lacks the type:\n%s", out)
				}
			})
		}
	}
}

// encoder sends every event with SendJSON from an Events handler.
type encoder struct{}

func (encoder) Message(_ context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]any{"text": m["text"]})
}

// strictEncoder asks for the socket to be closed when it cannot encode.
func (encoder) Strict(_ context.Context, c *consumer.Conn, m canal.Message) error {
	if err := c.SendJSON(map[string]any{"text": m["text"]}); err != nil {
		return &canal.CloseError{Code: 4000, Reason: "bad event", Err: err}
	}
	return nil
}

// TestEventEncodeErrorDropped: an Events handler whose SendJSON cannot encode drops
// that event and keeps the socket; a CloseError wrapping the same failure closes.
func TestEventEncodeErrorDropped(t *testing.T) {
	t.Parallel()
	for _, lk := range layerKinds {
		t.Run(lk.name, func(t *testing.T) {
			t.Parallel()
			layer := lk.make(t)
			var logs canaltest.LogBuffer
			h, err := consumer.New(func() encoder { return encoder{} }, consumer.Options[encoder]{
				Layer: layer, Groups: []string{"room"}, Logger: logs.Logger(),
				Events: map[string]consumer.EventFunc[encoder]{
					"room.message": encoder.Message,
					"room.strict":  encoder.Strict,
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			clients := dialN(t, serve(t, h), 3)
			sendBadThenGood(t, layer, clients, canal.Message{"type": "room.message", "text": math.NaN(), "s": secret})
			if st := h.Stats(); st.BadEvents != 3 {
				t.Errorf("stats %+v; want BadEvents 3 (one per member)", st)
			}
			if n := len(logs.Lines("handler cannot encode")); n != 1 {
				t.Errorf("%d log lines; want 1:\n%s", n, logs.String())
			}
			if strings.Contains(logs.String(), secret) {
				t.Errorf("log shows the payload:\n%s", logs.String())
			}
			// The handler's explicit choice wins: a CloseError closes.
			if err := layer.GroupSend(ctxT(t), "room", canal.Message{"type": "room.strict", "text": math.Inf(-1)}); err != nil {
				t.Fatal(err)
			}
			for i, c := range clients {
				if code, _, err := c.ExpectClose(ctxT(t)); err != nil || code != 4000 {
					t.Fatalf("member %d: close %d, %v; want 4000", i, code, err)
				}
			}
		})
	}
}

// TestSendJSONNotEscaped: SendJSON and JSONFrame write UTF-8 as is: no \u-escaped
// <, > or &, and no trailing newline.
func TestSendJSONNotEscaped(t *testing.T) {
	t.Parallel()
	const text = `<b>Tom & Jerry</b> é ✓`
	const want = `{"text":"<b>Tom & Jerry</b> é ✓"}`
	layer := newLayer(t)
	hEvents, err := consumer.New(func() encoder { return encoder{} }, consumer.Options[encoder]{
		Layer: layer, Groups: []string{"room"}, Logger: quiet,
		Events: map[string]consumer.EventFunc[encoder]{"room.message": encoder.Message},
	})
	if err != nil {
		t.Fatal(err)
	}
	hFrames, err := consumer.New(func() framed { return framed{} }, consumer.Options[framed]{
		Layer: layer, Groups: []string{"room"}, Logger: quiet,
		Frames: map[string]consumer.FrameFunc{"room.message": consumer.JSONFrame(func(m canal.Message) any {
			return map[string]any{"text": m["text"]}
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	clients := []*canaltest.Communicator{dial(t, serve(t, hEvents)), dial(t, serve(t, hFrames))}
	for range 2 { // twice: pooled encoders must not leak one value into the next
		if err := layer.GroupSend(ctxT(t), "room", canal.Message{"type": "room.message", "text": text}); err != nil {
			t.Fatal(err)
		}
		for i, c := range clients {
			if got, err := c.ReceiveText(ctxT(t)); err != nil || got != want {
				t.Fatalf("client %d: got %q, %v; want %q", i, got, err, want)
			}
		}
	}
}

// TestUnhandledEventRateLimited: 1,000 messages of a type nobody handles to 3 sockets
// cost one log line per type and second, and are all counted.
func TestUnhandledEventRateLimited(t *testing.T) {
	t.Parallel()
	layer := newLayer(t)
	var logs canaltest.LogBuffer
	h, err := consumer.New(func() framed { return framed{} }, consumer.Options[framed]{
		Layer: layer, Groups: []string{"room"}, Logger: logs.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	dialN(t, serve(t, h), 3)
	start := time.Now()
	for i := range 1000 {
		typ := "nobody.handles"
		if i%100 == 0 {
			typ = "other.type"
		}
		if err := layer.GroupSend(ctxT(t), "room", canal.Message{"type": typ}); err != nil {
			t.Fatal(err)
		}
		if (i+1)%50 == 0 {
			// Stay under the server's per-connection event queue.
			want := uint64(3 * (i + 1))
			deadline := time.Now().Add(5 * time.Second)
			for h.Stats().Unhandled < want && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if n := h.Stats().Unhandled; n != want {
				t.Fatalf("Unhandled %d after %d messages; want %d", n, i+1, want)
			}
		}
	}
	secs := int(time.Since(start)/time.Second) + 1
	for _, typ := range []string{"nobody.handles", "other.type"} {
		if n := len(logs.Lines("type=" + typ)); n < 1 || n > secs+1 {
			t.Errorf("%d lines for %s over %d s; want 1 per second at most:\n%s", n, typ, secs, logs.String())
		}
	}
}

// refuser's Connect fails the way the test says; Disconnect records its code.
type refuser struct {
	spy    *spyLayer
	fail   error
	accept bool
	codes  chan int
}

func (r *refuser) Connect(ctx context.Context, c *consumer.Conn) error {
	if err := c.GroupAdd(ctx, "dynamic"); err != nil {
		return err
	}
	if r.accept {
		if err := c.Accept(); err != nil {
			return err
		}
	}
	return r.fail
}

func (r *refuser) Disconnect(_ context.Context, c *consumer.Conn, code int) {
	r.spy.note(fmt.Sprint("disconnect ", code))
	r.codes <- code
}

// TestDisconnectAfterFailedConnect: a Connect that fails still gets its Disconnect,
// after the groups are left: 1006 when it failed before the accept (Channels'
// disconnect after DenyConnection), the close code when it failed after.
func TestDisconnectAfterFailedConnect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		fail       error
		accept     bool
		wantStatus int // HTTP refusal; 0 when the socket opens and closes
		wantClose  int
		wantCode   int // what Disconnect gets
	}{
		{name: "Reject 403", fail: canal.Reject(403, "no"), wantStatus: http.StatusForbidden, wantCode: canal.CloseAbnormal},
		{name: "any error before accept", fail: errors.New("boom"), wantStatus: http.StatusInternalServerError, wantCode: canal.CloseAbnormal},
		{name: "error after accept", fail: errors.New("boom"), accept: true, wantClose: canal.CloseInternalError, wantCode: canal.CloseInternalError},
		{name: "CloseError after accept", fail: &canal.CloseError{Code: 4001}, accept: true, wantClose: 4001, wantCode: 4001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spy := &spyLayer{Layer: newLayer(t)}
			codes := make(chan int, 2)
			h, err := consumer.New(func() *refuser { return &refuser{spy: spy, fail: tt.fail, accept: tt.accept, codes: codes} },
				consumer.Options[*refuser]{Layer: spy, Groups: []string{"static"}, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			s := serve(t, h)
			c, err := canaltest.Dial(ctxT(t), s.URL("/"), canaltest.DialOptions{})
			if tt.wantStatus != 0 {
				var he *canaltest.HandshakeError
				if !errors.As(err, &he) || he.Status != tt.wantStatus {
					t.Fatalf("dial: %v; want HTTP %d", err, tt.wantStatus)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Abort()
				if code, _, err := c.ExpectClose(ctxT(t)); err != nil || code != tt.wantClose {
					t.Fatalf("close %d, %v; want %d", code, err, tt.wantClose)
				}
			}
			select {
			case code := <-codes:
				if code != tt.wantCode {
					t.Fatalf("Disconnect got %d; want %d", code, tt.wantCode)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Disconnect never ran")
			}
			want := []string{"add static", "add dynamic", "discard static", "discard dynamic", fmt.Sprint("disconnect ", tt.wantCode)}
			if got := spy.entries(); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("operations %q; want %q", got, want)
			}
			select {
			case code := <-codes:
				t.Fatalf("Disconnect ran twice (again with %d)", code)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}
