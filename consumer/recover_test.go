package consumer_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/server"
)

const recGroup = "feed_1"

// feed is the recovering consumer of these tests: it joins recGroup and forwards
// "feed.item" events, by an Events handler or (frames true) a Frames builder.
type feed struct{}

// with changes the options (RecoverCheck, say).
func feedHandler(t *testing.T, l canal.Layer, frames bool, with ...func(*consumer.Options[*feed])) *consumer.Handler[*feed] {
	t.Helper()
	opts := consumer.Options[*feed]{Layer: l, Groups: []string{recGroup}, Recover: []string{"feed_*"}, Logger: quiet}
	if frames {
		opts.Frames = map[string]consumer.FrameFunc{"feed.item": consumer.JSONFrame(func(m canal.Message) any {
			return map[string]any{"n": m["n"]}
		})}
	} else {
		opts.Events = map[string]consumer.EventFunc[*feed]{"feed.item": func(_ *feed, _ context.Context, c *consumer.Conn, m canal.Message) error {
			if n, ok := m["n"].(int64); ok && n%7 == 0 {
				return c.SendBytes([]byte("seven")) // not a JSON object: a position frame follows
			}
			return c.SendJSON(map[string]any{"n": m["n"]})
		}}
	}
	for _, w := range with {
		w(&opts)
	}
	h, err := consumer.New(func() *feed { return &feed{} }, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// feedClient reads a recovering connection as canal.js does: positions from the
// "canal" key, position frames and canal.recover frames.
type feedClient struct {
	pos       [2]any // [offset, epoch] of the last message (or the recover frame)
	got       []int
	recovered []bool
}

func (fc *feedClient) param() string {
	if fc.pos[1] == nil {
		return ""
	}
	b, _ := json.Marshal(map[string]any{recGroup: fc.pos})
	return "?recover=" + base64.RawURLEncoding.EncodeToString(b)
}

// read handles one frame; seven is the binary frame's stand-in for n%7 == 0.
func (fc *feedClient) read(ctx context.Context, _ *testing.T, c *canaltest.Communicator) error {
	f, err := c.Receive(ctx)
	if err != nil {
		return err
	}
	if f.Binary {
		fc.got = append(fc.got, -7) // the next position frame names it
		return nil
	}
	var m struct {
		Type      string
		Group     string
		Offset    uint64
		Epoch     string
		Recovered bool
		N         *int
		Canal     *struct {
			Group  string
			Offset uint64
			Epoch  string
		}
	}
	if err := json.Unmarshal(f.Data, &m); err != nil {
		return fmt.Errorf("frame %q: %v", f.Data, err)
	}
	switch {
	case m.Type == consumer.EventRecover:
		fc.recovered = append(fc.recovered, m.Recovered)
		fc.pos = [2]any{m.Offset, m.Epoch}
	case m.Type == consumer.EventPosition:
		if len(fc.got) == 0 || fc.got[len(fc.got)-1] != -7 {
			return fmt.Errorf("position frame %s not after a binary frame", f.Data)
		}
		fc.got[len(fc.got)-1] = int(m.Offset)
		fc.pos = [2]any{m.Offset, m.Epoch}
	case m.Canal != nil && m.N != nil:
		if m.Canal.Group != recGroup || uint64(*m.N) != m.Canal.Offset {
			return fmt.Errorf("frame %s: position does not match", f.Data)
		}
		fc.got = append(fc.got, *m.N)
		fc.pos = [2]any{m.Canal.Offset, m.Canal.Epoch}
	default:
		return fmt.Errorf("unexpected frame %s", f.Data)
	}
	return nil
}

// publish sends n feed items (n = offset: the group's history starts empty) while
// clients come and go.
func publish(ctx context.Context, l canal.HistoryLayer, from, to int, every time.Duration) error {
	for i := from; i <= to; i++ {
		p, err := l.Publish(ctx, recGroup, canal.Message{"type": "feed.item", "n": int64(i)})
		if err != nil {
			return err
		}
		if p.Offset != uint64(i) {
			return fmt.Errorf("message %d got offset %d", i, p.Offset)
		}
		time.Sleep(every)
	}
	return nil
}

// checkSeq fails unless got is exactly 1..n.
func checkSeq(t *testing.T, got []int, n int) {
	t.Helper()
	if err := seqError(got, n); err != nil {
		t.Fatal(err)
	}
}

func seqError(got []int, n int) error {
	if len(got) != n {
		return fmt.Errorf("got %d messages, want %d: %v", len(got), n, got)
	}
	for i, v := range got {
		if v != i+1 {
			return fmt.Errorf("message %d is %d (a gap or a duplicate): %v", i+1, v, got)
		}
	}
	return nil
}

// moveDuringPublish: a client reads part of the feed on server a, drops, and comes
// back on server b (another process's layer when a and b differ) while the publisher
// goes on; it ends with every message once, in order.
func moveDuringPublish(t *testing.T, pub canal.HistoryLayer, a, b *canaltest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const total = 300
	fc := &feedClient{}
	c, err := canaltest.Dial(ctx, a.URL("/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.read(ctx, t, c); err != nil || len(fc.recovered) != 1 || !fc.recovered[0] {
		t.Fatalf("first frame: recover %v, err %v", fc.recovered, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- publish(ctx, pub, 1, total, time.Millisecond) }()
	for len(fc.got) < 100 {
		if err := fc.read(ctx, t, c); err != nil {
			t.Fatal(err)
		}
	}
	c.Abort() // gone without a close frame, as a dropped network does
	time.Sleep(20 * time.Millisecond)
	c2, err := canaltest.Dial(ctx, b.URL("/"+fc.param()), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(1000)
	for len(fc.got) < total {
		if err := fc.read(ctx, t, c2); err != nil {
			t.Fatalf("after %d messages: %v", len(fc.got), err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkSeq(t, fc.got, total)
	if len(fc.recovered) != 2 || !fc.recovered[1] {
		t.Fatalf("recover frames %v, want [true true]", fc.recovered)
	}
	if err := c2.ExpectNothing(50 * time.Millisecond); err != nil {
		t.Fatalf("a frame after the last message: %v", err)
	}
}

var rules = []layers.HistoryRule{{Group: "feed_*", Size: 1000}}

func TestRecoverMemory(t *testing.T) {
	for _, frames := range []bool{false, true} {
		t.Run(fmt.Sprintf("frames=%v", frames), func(t *testing.T) {
			l, err := layers.NewMemory(layers.MemoryOptions{History: rules})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close(context.Background()) })
			a := canaltest.NewServer(t, feedHandler(t, l, frames), server.Options{Logger: quiet})
			b := canaltest.NewServer(t, feedHandler(t, l, !frames), server.Options{Logger: quiet})
			moveDuringPublish(t, l, a, b)
		})
	}
}

func newRedisLayer(t *testing.T, url string, r []layers.HistoryRule) *layers.Redis {
	t.Helper()
	l, err := layers.NewRedis(ctxT(t), layers.RedisOptions{Hosts: []string{url}, History: r, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// TestRecoverRedis: two processes' layers on one Redis; the client moves from one to
// the other mid-feed, the publisher on a third.
func TestRecoverRedis(t *testing.T) {
	r := canaltest.StartRedis(t)
	pub := newRedisLayer(t, r.URL(), rules)
	a := canaltest.NewServer(t, feedHandler(t, newRedisLayer(t, r.URL(), rules), true), server.Options{Logger: quiet})
	b := canaltest.NewServer(t, feedHandler(t, newRedisLayer(t, r.URL(), rules), false), server.Options{Logger: quiet})
	moveDuringPublish(t, pub, a, b)
}

// TestRecoverOutOfReach: a client away while more messages than the history holds
// were published, or whose Redis restarted empty (another epoch), gets recovered
// false and then the live messages.
func TestRecoverOutOfReach(t *testing.T) {
	r := canaltest.StartRedis(t)
	small := []layers.HistoryRule{{Group: "feed_*", Size: 10}}
	pub := newRedisLayer(t, r.URL(), small)
	srv := canaltest.NewServer(t, feedHandler(t, newRedisLayer(t, r.URL(), small), true), server.Options{Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	reconnect := func(fc *feedClient) *canaltest.Communicator {
		c, err := canaltest.Dial(ctx, srv.URL("/"+fc.param()), canaltest.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(1000) })
		return c
	}
	fc := &feedClient{}
	c := reconnect(fc)
	if err := fc.read(ctx, t, c); err != nil {
		t.Fatal(err)
	}
	c.Abort()
	if err := publish(ctx, pub, 1, 30, 0); err != nil { // 30 > Size 10
		t.Fatal(err)
	}
	c = reconnect(fc)
	if err := fc.read(ctx, t, c); err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false}; fmt.Sprint(fc.recovered) != fmt.Sprint(want) || fc.pos[0] != uint64(30) {
		t.Fatalf("recover frames %v at %v, want %v at offset 30", fc.recovered, fc.pos, want)
	}
	if err := publish(ctx, pub, 31, 31, 0); err != nil {
		t.Fatal(err)
	}
	if err := fc.read(ctx, t, c); err != nil || fmt.Sprint(fc.got) != "[31]" {
		t.Fatalf("after not recovered: %v, %v", fc.got, err)
	}
	c.Abort()

	// Redis restarts empty: the position's epoch is gone.
	old := fc.pos
	r.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := pub.Publish(ctx, recGroup, canal.Message{"type": "feed.item", "n": int64(1)})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fc.got = nil
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// The server's layer may still be reconnecting to Redis (503).
		var err error
		if c, err = canaltest.Dial(ctx, srv.URL("/"+fc.param()), canaltest.DialOptions{}); err == nil {
			t.Cleanup(func() { c.Close(1000) })
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if err := fc.read(ctx, t, c); err != nil {
		t.Fatal(err)
	}
	if !slicesEqual(fc.recovered, []bool{true, false, false}) || fc.pos[1] == old[1] || fc.pos[0] != uint64(1) {
		t.Fatalf("after a Redis restart: recover frames %v at %v (was %v)", fc.recovered, fc.pos, old)
	}
}

func slicesEqual(a, b []bool) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// TestRecoverLiveEpochChange: a connected client whose Redis restarts gets recovered
// false on the socket when the first message of the new epoch arrives.
func TestRecoverLiveEpochChange(t *testing.T) {
	r := canaltest.StartRedis(t)
	pub := newRedisLayer(t, r.URL(), rules)
	srv := canaltest.NewServer(t, feedHandler(t, newRedisLayer(t, r.URL(), rules), true), server.Options{Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fc := &feedClient{}
	c, err := canaltest.Dial(ctx, srv.URL("/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(1000)
	if err := fc.read(ctx, t, c); err != nil {
		t.Fatal(err)
	}
	if err := publish(ctx, pub, 1, 3, 0); err != nil {
		t.Fatal(err)
	}
	for len(fc.got) < 3 {
		if err := fc.read(ctx, t, c); err != nil {
			t.Fatal(err)
		}
	}
	r.Restart()
	// The consumer's layer resubscribes after the restart; publish until the client
	// hears of the new epoch.
	deadline := time.Now().Add(15 * time.Second)
	for len(fc.recovered) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no recover frame after the restart; frames %v %v", fc.got, fc.recovered)
		}
		_, _ = pub.Publish(ctx, recGroup, canal.Message{"type": "feed.item", "n": int64(-1)})
		rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := fc.read(rctx, t, c)
		rcancel()
		if err != nil && !errors.Is(err, canaltest.ErrNoFrame) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
	}
	if fc.recovered[1] {
		t.Fatalf("recover frames %v: the new epoch was taken as recovered", fc.recovered)
	}
}

// TestRecoverBadParam: a recover parameter that does not decode refuses the
// handshake with 400 and says why; nothing else changes.
func TestRecoverBadParam(t *testing.T) {
	l, err := layers.NewMemory(layers.MemoryOptions{History: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	srv := canaltest.NewServer(t, feedHandler(t, l, true), server.Options{Logger: quiet})
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	many := map[string][2]any{}
	for i := range consumer.MaxRecoverGroups + 1 {
		many[fmt.Sprintf("g%d", i)] = [2]any{1, "e"}
	}
	manyJSON, _ := json.Marshal(many)
	for _, tc := range []struct{ name, value, reason string }{
		{"not base64", "!!", "not base64url"},
		{"not JSON", enc("{"), "not a JSON object"},
		{"not pairs", enc(`{"feed_1": 3}`), "not a JSON object"},
		{"negative offset", enc(`{"feed_1": [-1, "e"]}`), `group "feed_1"`},
		{"fraction", enc(`{"feed_1": [1.5, "e"]}`), `group "feed_1"`},
		{"epoch not a string", enc(`{"feed_1": [1, 2]}`), `group "feed_1"`},
		{"three items", enc(`{"feed_1": [1, "e", 3]}`), `group "feed_1"`},
		{"too many groups", enc(string(manyJSON)), "groups, at most"},
		{"too long", strings.Repeat("A", consumer.MaxRecoverParam+4), "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := canaltest.Dial(ctxT(t), srv.URL("/?recover="+tc.value), canaltest.DialOptions{})
			var he *canaltest.HandshakeError
			if !errors.As(err, &he) || he.Status != 400 || !strings.Contains(he.Reason, tc.reason) {
				t.Fatalf("got %v (%+v), want 400 with %q", err, he, tc.reason)
			}
		})
	}
	// Padding is accepted, unknown groups are ignored.
	b := base64.URLEncoding.EncodeToString([]byte(`{"other_1": [3, "x"]}`))
	c, err := canaltest.Dial(ctxT(t), srv.URL("/?recover="+b), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(1000)
	fc := &feedClient{}
	if err := fc.read(ctxT(t), t, c); err != nil || !slicesEqual(fc.recovered, []bool{true}) {
		t.Fatalf("recover %v, %v", fc.recovered, err)
	}
}

// TestRecoverOptions: the configuration errors New reports.
func TestRecoverOptions(t *testing.T) {
	hist, _ := layers.NewMemory(layers.MemoryOptions{History: rules})
	defer hist.Close(context.Background())
	plain := struct{ canal.Layer }{hist} // a Layer without history
	ev := func(*feed, context.Context, *consumer.Conn, canal.Message) error { return nil }
	for _, tc := range []struct {
		name string
		opts consumer.Options[*feed]
		want string
	}{
		{"no layer", consumer.Options[*feed]{Recover: []string{"a"}}, "Recover needs a Layer"},
		{"no history", consumer.Options[*feed]{Layer: plain, Recover: []string{"a"}}, "canal.HistoryLayer"},
		{"bad pattern", consumer.Options[*feed]{Layer: hist, Recover: []string{"a["}}, "bad Recover pattern"},
		{"negative buffer", consumer.Options[*feed]{Layer: hist, Recover: []string{"a"}, RecoverBuffer: -1}, "negative RecoverBuffer"},
		{"buffer alone", consumer.Options[*feed]{Layer: hist, RecoverBuffer: 5}, "RecoverBuffer without Recover"},
		{"check alone", consumer.Options[*feed]{Layer: hist, RecoverCheck: time.Minute}, "RecoverCheck without Recover"},
		{"check too often", consumer.Options[*feed]{Layer: hist, Recover: []string{"a"}, RecoverCheck: 10 * time.Millisecond}, "shorter than 1s"},
		{"reserved event", consumer.Options[*feed]{Layer: hist, Events: map[string]consumer.EventFunc[*feed]{consumer.EventRecover: ev}}, "reserved"},
		{"reserved frame", consumer.Options[*feed]{Layer: hist, Frames: map[string]consumer.FrameFunc{consumer.EventPosition: consumer.JSONFrame(func(canal.Message) any { return 1 })}}, "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consumer.New(func() *feed { return &feed{} }, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRecoverConcurrentCatchup: many clients reconnect from different positions while
// the publisher runs; each ends with every message once, in order (race detector on).
func TestRecoverConcurrentCatchup(t *testing.T) {
	r := canaltest.StartRedis(t)
	pub := newRedisLayer(t, r.URL(), rules)
	srv := canaltest.NewServer(t, feedHandler(t, newRedisLayer(t, r.URL(), rules), true), server.Options{Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const total, clients = 200, 8
	if err := publish(ctx, pub, 1, 20, 0); err != nil {
		t.Fatal(err)
	}
	epoch := func() string {
		_, head, err := pub.History(ctx, recGroup, canal.Position{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return head.Epoch
	}()
	errc := make(chan error, 1)
	go func() { errc <- publish(ctx, pub, 21, total, 200*time.Microsecond) }()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fc := &feedClient{pos: [2]any{uint64(i * 2), epoch}}
			for range i * 3 {
				fc.got = append(fc.got, len(fc.got)+1) // what it had before
			}
			fc.got = fc.got[:i*2]
			c, err := canaltest.Dial(ctx, srv.URL("/"+fc.param()), canaltest.DialOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(1000)
			for len(fc.got) < total {
				if err := fc.read(ctx, t, c); err != nil {
					t.Errorf("client %d after %d: %v", i, len(fc.got), err)
					return
				}
			}
			if err := seqError(fc.got, total); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
