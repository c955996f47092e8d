package history_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/history"
	"github.com/canal-rt/canal/layers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const group = "chat_room"

// subscriber is one connection of a client: a channel attached to layer l, joined to
// the group, feeding a Recovery; a goroutine runs Catchup whenever Live asks.
type subscriber struct {
	rec    *history.Recovery
	detach func()
	kick   chan struct{}
	done   chan struct{}
	ready  chan struct{} // closed after the first Catchup
	stop   chan struct{}
	errs   chan error

	mu   sync.Mutex
	got  []canal.Position
	lost atomic.Bool // Catchup said ErrNotRecovered
}

// subscribe connects: drop is the chance that the layer's deliver drops a message
// (the layer loses it: a gap) and, as often, that emit refuses one (the
// connection's queue is full).
func subscribe(t *testing.T, l canal.HistoryLayer, since canal.Position, drop float64) *subscriber {
	t.Helper()
	s := &subscriber{kick: make(chan struct{}, 1), done: make(chan struct{}), ready: make(chan struct{}), stop: make(chan struct{}),
		errs: make(chan error, 100)}
	s.rec = history.New(group, since, 0, func(m canal.Message) bool {
		if drop > 0 && rand.Float64() < drop {
			return false // the connection's queue is full
		}
		_, p, ok := canal.PositionOf(m)
		if !ok {
			s.errs <- errors.New("emitted a message without a position")
			return true
		}
		s.mu.Lock()
		s.got = append(s.got, p)
		s.mu.Unlock()
		return true
	})
	ctx := context.Background()
	name, detach, err := l.Attach(ctx, "specific.", func(m canal.Message) bool {
		if drop > 0 && rand.Float64() < drop {
			return false
		}
		if !s.rec.Live(m) {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	s.detach = detach
	if err := l.GroupAdd(ctx, group, name); err != nil {
		t.Fatal(err)
	}
	s.kick <- struct{}{} // the first catch-up
	go func() {
		defer close(s.done)
		first := true
		for {
			select {
			case <-s.stop:
				return
			case <-s.kick:
			}
			_, err := s.rec.Catchup(ctx, l)
			if first {
				close(s.ready)
				first = false
			}
			if errors.Is(err, canal.ErrNotRecovered) {
				s.lost.Store(true)
			} else if err != nil {
				s.errs <- err
			}
		}
	}()
	return s
}

func (s *subscriber) kickNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() {
	s.detach()
	close(s.stop) // a delivery under way may still kick: kick is never closed
	<-s.done
}

func (s *subscriber) positions() []canal.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]canal.Position(nil), s.got...)
}

// waitFor waits until s has got offset n, running a Catchup every 100 ms (a lost
// last message shows no gap).
func (s *subscriber) waitFor(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-tick.C:
			s.kickNow()
		default:
		}
		got := s.positions()
		if len(got) > 0 && got[len(got)-1].Offset >= n {
			return
		}
		select {
		case err := <-s.errs:
			t.Fatal(err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	got := s.positions()
	t.Fatalf("timed out: got %d messages, want up to offset %d", len(got), n)
}

// checkContiguous fails unless got is from..to exactly, in one epoch.
func checkContiguous(t *testing.T, name string, got []canal.Position, from, to uint64) {
	t.Helper()
	if uint64(len(got)) != to-from+1 {
		t.Fatalf("%s: %d messages, want %d (offsets %d..%d)", name, len(got), to-from+1, from, to)
	}
	for i, p := range got {
		if p.Offset != from+uint64(i) || p.Epoch != got[0].Epoch {
			t.Fatalf("%s: message %d at %+v, want offset %d (a gap or a duplicate)", name, i, p, from+uint64(i))
		}
	}
}

// publishAll publishes n messages from publishers goroutines, spread over layers.
func publishAll(t *testing.T, ls []canal.HistoryLayer, publishers, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // a failing test still waits for its publishers
	for i := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ls[i%len(ls)]
			for range n / publishers {
				if _, err := l.Publish(context.Background(), group, canal.Message{"type": "chat.message"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	return &wg
}

// reconnect: a client gets part of the stream on one connection, disconnects,
// reconnects with its last position (to process b) while messages keep coming, and
// must have got every message exactly once, in order.
func reconnect(t *testing.T, a, b canal.HistoryLayer, drop float64) {
	const n, publishers = 2000, 4
	ls := []canal.HistoryLayer{a, b}
	first := subscribe(t, a, canal.Position{}, drop)
	<-first.ready // live from offset 0
	publishAll(t, ls, publishers, n/4).Wait()
	first.waitFor(t, n/4)
	first.close()
	got1 := first.positions()
	checkContiguous(t, "first connection", got1, 1, n/4)
	last := got1[len(got1)-1]
	publishAll(t, ls, publishers, n/4).Wait() // while the client is away
	wg := publishAll(t, ls, publishers, n/2)  // while it reconnects and catches up
	second := subscribe(t, b, last, drop)
	defer second.close()
	wg.Wait()
	second.waitFor(t, n)
	if second.lost.Load() {
		t.Fatal("Catchup said not recovered")
	}
	checkContiguous(t, "second connection", second.positions(), last.Offset+1, n)
	if second.positions()[0].Epoch != last.Epoch {
		t.Fatal("epoch changed")
	}
}

func memoryLayer(t *testing.T) *layers.Memory {
	l, err := layers.NewMemory(layers.MemoryOptions{Capacity: 10000,
		History: []layers.HistoryRule{{Group: "chat_*", Size: 5000}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func redisLayers(t *testing.T) (a, b *layers.Redis) {
	srv := canaltest.StartRedis(t)
	mk := func() *layers.Redis {
		l, err := layers.NewRedis(context.Background(), layers.RedisOptions{Hosts: []string{srv.URL()},
			Capacity: 10000, History: []layers.HistoryRule{{Group: "chat_*", Size: 5000}},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(context.Background()) })
		return l
	}
	return mk(), mk()
}

func TestReconnectMemory(t *testing.T) {
	l := memoryLayer(t)
	reconnect(t, l, l, 0)
}

func TestReconnectMemoryDrops(t *testing.T) {
	l := memoryLayer(t)
	reconnect(t, l, l, 0.05)
}

func TestReconnectOtherProcess(t *testing.T) {
	a, b := redisLayers(t)
	reconnect(t, a, b, 0)
}

func TestReconnectOtherProcessDrops(t *testing.T) {
	a, b := redisLayers(t)
	reconnect(t, a, b, 0.05)
}

// A position the history no longer reaches: ErrNotRecovered, then live from the head.
func TestNotRecovered(t *testing.T) {
	l, err := layers.NewMemory(layers.MemoryOptions{History: []layers.HistoryRule{{Group: "chat_*", Size: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	ctx := context.Background()
	var first canal.Position
	for i := range 10 {
		p, err := l.Publish(ctx, group, canal.Message{"type": "x"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
	}
	var got []canal.Position
	rec := history.New(group, first, 0, func(m canal.Message) bool {
		_, p, _ := canal.PositionOf(m)
		got = append(got, p)
		return true
	})
	pos, err := rec.Catchup(ctx, l)
	if !errors.Is(err, canal.ErrNotRecovered) || pos.Offset != 10 || len(got) != 0 {
		t.Fatalf("Catchup = %+v, %v, %v; want ErrNotRecovered at 10 with nothing", pos, err, got)
	}
	// Live from there on.
	p, _ := l.Publish(ctx, group, canal.Message{"type": "x"})
	rec.Live(canal.WithPosition(canal.Message{"type": "x"}, group, p))
	if len(got) != 1 || got[0] != p {
		t.Fatalf("live after not recovered: %v", got)
	}
	// Another epoch (history lost): not recovered either.
	rec2 := history.New(group, canal.Position{Offset: 3, Epoch: "gone"}, 0, func(canal.Message) bool { return true })
	if _, err := rec2.Catchup(ctx, l); !errors.Is(err, canal.ErrNotRecovered) {
		t.Fatalf("Catchup(other epoch) = %v", err)
	}
}

// Live messages: duplicates dropped, a gap or a new epoch asks for a catch-up, other
// messages pass.
func TestLiveSteps(t *testing.T) {
	var got []canal.Message
	refuse := false
	rec := history.New(group, canal.Position{}, 2, func(m canal.Message) bool {
		if refuse {
			return false
		}
		got = append(got, m)
		return true
	})
	l := memoryLayer(t)
	if _, err := rec.Catchup(context.Background(), l); err != nil { // empty group: live at 0
		t.Fatal(err)
	}
	e := rec.Position().Epoch
	at := func(off uint64, epoch string) canal.Message {
		return canal.WithPosition(canal.Message{"type": "x"}, group, canal.Position{Offset: off, Epoch: epoch})
	}
	steps := []struct {
		msg  canal.Message
		ok   bool
		emit bool
	}{
		{at(1, e), true, true},
		{at(1, e), true, false}, // duplicate
		{canal.Message{"type": "plain"}, true, true},
		{canal.WithPosition(canal.Message{"type": "x"}, "other", canal.Position{Offset: 9, Epoch: "z"}), true, true},
		{at(2, e), true, true},
		{at(4, e), false, false}, // gap
	}
	for i, s := range steps {
		n := len(got)
		if ok := rec.Live(s.msg); ok != s.ok || (len(got) > n) != s.emit {
			t.Fatalf("step %d: Live = %v, emitted %v; want %v, %v", i, ok, len(got) > n, s.ok, s.emit)
		}
	}
	// Buffering now: bounded (2), the rest read back from the history.
	rec.Live(at(5, e))
	rec.Live(at(6, e))
	if rec.Position().Offset != 2 {
		t.Fatal("emitted while catching up")
	}
	if ok := rec.Live(at(1, "new")); !ok {
		t.Fatal("Live while catching up must buffer")
	}
}

// The Go process restarts: its layer closes, a new one (same Redis) serves the
// reconnecting client, which misses nothing.
func TestReconnectAfterProcessRestart(t *testing.T) {
	srv := canaltest.StartRedis(t)
	mk := func() *layers.Redis {
		l, err := layers.NewRedis(context.Background(), layers.RedisOptions{Hosts: []string{srv.URL()},
			History: []layers.HistoryRule{{Group: "chat_*"}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	ctx := context.Background()
	old, pub := mk(), mk()
	defer pub.Close(ctx)
	s := subscribe(t, old, canal.Position{}, 0)
	<-s.ready
	for range 3 {
		if _, err := pub.Publish(ctx, group, canal.Message{"type": "x"}); err != nil {
			t.Fatal(err)
		}
	}
	s.waitFor(t, 3)
	s.close()
	checkContiguous(t, "before the restart", s.positions(), 1, 3)
	last := s.positions()[2]
	old.Close(ctx) // the process is gone
	for range 4 {  // published while the client is away
		if _, err := pub.Publish(ctx, group, canal.Message{"type": "x"}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := mk()
	defer fresh.Close(ctx)
	s2 := subscribe(t, fresh, last, 0)
	defer s2.close()
	if _, err := pub.Publish(ctx, group, canal.Message{"type": "x"}); err != nil {
		t.Fatal(err)
	}
	s2.waitFor(t, 8)
	checkContiguous(t, "after the restart", s2.positions(), 4, 8)
}

// Redis restarts empty while the client is away: its position's epoch is gone, it is
// told so (ErrNotRecovered) and goes on live in the new epoch.
func TestReconnectAfterRedisRestart(t *testing.T) {
	srv := canaltest.StartRedis(t)
	l, err := layers.NewRedis(context.Background(), layers.RedisOptions{Hosts: []string{srv.URL()},
		History: []layers.HistoryRule{{Group: "chat_*"}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	defer l.Close(ctx)
	before, err := l.Publish(ctx, group, canal.Message{"type": "x"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	var after canal.Position
	for i := 0; ; i++ { // the first command may meet a dead pooled connection
		if after, err = l.Publish(ctx, group, canal.Message{"type": "x"}); err == nil || i == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := subscribe(t, l, before, 0)
	defer s.close()
	deadline := time.Now().Add(10 * time.Second)
	for !s.lost.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !s.lost.Load() {
		t.Fatal("Catchup did not say ErrNotRecovered")
	}
	next, err := l.Publish(ctx, group, canal.Message{"type": "x"})
	if err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, next.Offset)
	got := s.positions()
	if len(got) != 1 || got[0] != next || next.Epoch != after.Epoch || after.Epoch == before.Epoch {
		t.Fatalf("after not recovered: got %+v; before %+v, after %+v, next %+v", got, before, after, next)
	}
}

// emit refusing a message (a full connection queue): the recovery stops before it
// and reads it back from the history, live or during a catch-up.
func TestRefused(t *testing.T) {
	l := memoryLayer(t)
	ctx := context.Background()
	_, start, err := l.History(ctx, group, canal.Position{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := l.Publish(ctx, group, canal.Message{"type": "x"}); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	calls := 0
	rec := history.New(group, start, 0, func(m canal.Message) bool {
		calls++
		if calls == 2 || calls == 5 {
			return false
		}
		_, p, _ := canal.PositionOf(m)
		got = append(got, p.Offset)
		return true
	})
	if pos, err := rec.Catchup(ctx, l); err != nil || pos.Offset != 3 {
		t.Fatalf("Catchup = %+v, %v", pos, err)
	}
	p4, _ := l.Publish(ctx, group, canal.Message{"type": "x"})
	if rec.Live(canal.WithPosition(canal.Message{"type": "x"}, group, p4)) { // the 5th call: refused
		t.Fatal("Live did not report the refused message")
	}
	if pos, err := rec.Catchup(ctx, l); err != nil || pos.Offset != 4 {
		t.Fatalf("Catchup = %+v, %v", pos, err)
	}
	if fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("got %v, want [1 2 3 4]", got)
	}
}
