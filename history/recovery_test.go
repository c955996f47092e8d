package history_test

import (
	"context"
	"errors"
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
	errs   chan error

	mu   sync.Mutex
	got  []canal.Position
	lost atomic.Bool // Catchup said ErrNotRecovered
}

// subscribe connects: drop is the chance that the layer's deliver drops a message
// (a full queue), to exercise the gap path.
func subscribe(t *testing.T, l canal.HistoryLayer, since canal.Position, drop float64) *subscriber {
	t.Helper()
	s := &subscriber{kick: make(chan struct{}, 1), done: make(chan struct{}), errs: make(chan error, 100)}
	s.rec = history.New(group, since, 0, func(m canal.Message) {
		_, p, ok := canal.PositionOf(m)
		if !ok {
			s.errs <- errors.New("emitted a message without a position")
			return
		}
		s.mu.Lock()
		s.got = append(s.got, p)
		s.mu.Unlock()
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
		for range s.kick {
			_, err := s.rec.Catchup(ctx, l)
			if errors.Is(err, canal.ErrNotRecovered) {
				s.lost.Store(true)
			} else if err != nil {
				s.errs <- err
			}
		}
	}()
	return s
}

func (s *subscriber) close() {
	s.detach()
	close(s.kick)
	<-s.done
}

func (s *subscriber) positions() []canal.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]canal.Position(nil), s.got...)
}

// waitFor waits until s has got offset n.
func (s *subscriber) waitFor(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
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
func publishAll(t *testing.T, ls []canal.HistoryLayer, publishers, n int, started chan<- struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	var count atomic.Int64
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
				if count.Add(1) == int64(n/4) {
					close(started)
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
	first := subscribe(t, a, canal.Position{}, drop)
	started := make(chan struct{})
	wg := publishAll(t, []canal.HistoryLayer{a, b}, publishers, n, started)
	<-started
	first.close()
	got1 := first.positions()
	if len(got1) == 0 {
		t.Fatal("the first connection got nothing")
	}
	checkContiguous(t, "first connection", got1, got1[0].Offset, got1[len(got1)-1].Offset)
	last := got1[len(got1)-1]

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
	rec := history.New(group, first, 0, func(m canal.Message) {
		_, p, _ := canal.PositionOf(m)
		got = append(got, p)
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
	rec2 := history.New(group, canal.Position{Offset: 3, Epoch: "gone"}, 0, func(canal.Message) {})
	if _, err := rec2.Catchup(ctx, l); !errors.Is(err, canal.ErrNotRecovered) {
		t.Fatalf("Catchup(other epoch) = %v", err)
	}
}

// Live messages: duplicates dropped, a gap or a new epoch asks for a catch-up, other
// messages pass.
func TestLiveSteps(t *testing.T) {
	var got []canal.Message
	rec := history.New(group, canal.Position{}, 2, func(m canal.Message) { got = append(got, m) })
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
