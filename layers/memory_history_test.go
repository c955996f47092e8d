package layers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// The memory and Redis layers keep history with the same semantics.
func TestHistorySemantics(t *testing.T) {
	rules := []HistoryRule{{Group: "chat_*", Size: 3, TTL: time.Second}}
	mk := map[string]func(t *testing.T) canal.HistoryLayer{
		"memory": func(t *testing.T) canal.HistoryLayer {
			m, err := NewMemory(MemoryOptions{History: rules})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close(context.Background()) })
			return m
		},
		"redis": func(t *testing.T) canal.HistoryLayer {
			return newRedisLayer(t, canaltest.StartRedis(t), RedisOptions{History: rules})
		},
	}
	for name, newLayer := range mk {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := newLayer(t)
			ctx := context.Background()
			live := collectGroup(t, l, "chat_room")
			// A position asked before anything was published: the epoch is fixed.
			_, start, err := l.History(ctx, "chat_room", canal.Position{}, 0)
			if err != nil || start.Offset != 0 || start.Epoch == "" {
				t.Fatalf("History of a new group = %+v, %v", start, err)
			}
			for i := range 4 {
				p, err := l.Publish(ctx, "chat_room", canal.Message{"type": "x", "n": i})
				if err != nil || p != (canal.Position{Offset: uint64(i + 1), Epoch: start.Epoch}) {
					t.Fatalf("Publish %d = %+v, %v (start %+v)", i, p, err, start)
				}
				if got := mustPos(t, nextMsg(t, live), "chat_room"); got != p {
					t.Fatalf("live %+v, published %+v", got, p)
				}
			}
			// Size 3: offsets 2..4 kept; since 1 is recoverable, since 0 is not.
			if msgs, _, err := l.History(ctx, "chat_room", canal.Position{Offset: 1, Epoch: start.Epoch}, 0); err != nil || len(msgs) != 3 {
				t.Fatalf("History since 1 = %v, %v", msgs, err)
			}
			if _, _, err := l.History(ctx, "chat_room", start, 0); !errors.Is(err, canal.ErrNotRecovered) {
				t.Fatalf("History since 0 = %v; want ErrNotRecovered", err)
			}
			// A plain GroupSend to a history group publishes.
			if err := l.GroupSend(ctx, "chat_room", canal.Message{"type": "x"}); err != nil {
				t.Fatal(err)
			}
			if got := mustPos(t, nextMsg(t, live), "chat_room"); got.Offset != 5 {
				t.Fatalf("GroupSend got %+v", got)
			}
			// Other groups are untouched.
			other := collectGroup(t, l, "news")
			if err := l.GroupSend(ctx, "news", canal.Message{"type": "x"}); err != nil {
				t.Fatal(err)
			}
			if m := nextMsg(t, other); m[canal.PositionKey] != nil {
				t.Fatalf("news message carries a position: %v", m)
			}
			// Age: after TTL the messages are gone; a client at the head still
			// recovers (nothing missed), one behind does not.
			time.Sleep(2100 * time.Millisecond)
			head := canal.Position{Offset: 5, Epoch: start.Epoch}
			if msgs, h, err := l.History(ctx, "chat_room", head, 0); err != nil || len(msgs) != 0 || h != head {
				t.Fatalf("History at head after TTL = %v, %+v, %v", msgs, h, err)
			}
			if _, _, err := l.History(ctx, "chat_room", canal.Position{Offset: 4, Epoch: start.Epoch}, 0); !errors.Is(err, canal.ErrNotRecovered) {
				t.Fatalf("History behind after TTL = %v; want ErrNotRecovered", err)
			}
			// The offset goes on in the same epoch.
			if p, err := l.Publish(ctx, "chat_room", canal.Message{"type": "x"}); err != nil || p != (canal.Position{Offset: 6, Epoch: start.Epoch}) {
				t.Fatalf("Publish after TTL = %+v, %v", p, err)
			}
			// Flush loses it all: a new epoch.
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if _, h, err := l.History(ctx, "chat_room", head, 0); !errors.Is(err, canal.ErrNotRecovered) || h.Epoch == start.Epoch {
				t.Fatalf("History after Flush = %+v, %v", h, err)
			}
		})
	}
}

// A group quiet for longer than its meta lifetime starts a new epoch (as its Redis
// meta key would expire).
func TestMemoryHistoryQuietGroup(t *testing.T) {
	m, err := NewMemory(MemoryOptions{History: []HistoryRule{{Group: "chat_*"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx := context.Background()
	p, err := m.Publish(ctx, "chat_room", canal.Message{"type": "x"})
	if err != nil {
		t.Fatal(err)
	}
	m.start = m.start.Add(-HistoryMetaTTL - time.Minute) // a day passes
	if _, h, err := m.History(ctx, "chat_room", p, 0); !errors.Is(err, canal.ErrNotRecovered) || h.Epoch == p.Epoch || h.Offset != 0 {
		t.Fatalf("History after a quiet day = %+v, %v", h, err)
	}
	m.hist.mu.Lock()
	n := len(m.hist.groups)
	m.hist.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d group histories kept, want 1", n)
	}
}

func TestMemoryHistoryErrors(t *testing.T) {
	m, err := NewMemory(MemoryOptions{History: []HistoryRule{{Group: "chat_*"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.Publish(ctx, "news", canal.Message{"type": "x"}); !errors.Is(err, canal.ErrNoHistory) {
		t.Fatalf("Publish(no rule) = %v", err)
	}
	if _, err := m.Publish(ctx, "chat_a", canal.Message{"type": "x", canal.PositionKey: 1}); !errors.Is(err, canal.ErrInvalidMessage) {
		t.Fatalf("Publish(reserved) = %v", err)
	}
	if _, _, err := m.History(ctx, "chat a", canal.Position{}, 0); !errors.Is(err, canal.ErrInvalidName) {
		t.Fatalf("History(bad name) = %v", err)
	}
	m.Close(ctx)
	if _, err := m.Publish(ctx, "chat_a", canal.Message{"type": "x"}); !errors.Is(err, canal.ErrLayerClosed) {
		t.Fatalf("Publish after Close = %v", err)
	}
	if _, err := NewMemory(MemoryOptions{History: []HistoryRule{{Group: "[", Size: 1}}}); err == nil {
		t.Fatal("bad pattern accepted")
	}
}

// With two Hosts the members' queue keys may live on the other host: they get their
// copies after the script, with the same position.
func TestRedisHistoryTwoHosts(t *testing.T) {
	s1, s2 := canaltest.StartRedis(t), canaltest.StartRedis(t)
	opts := RedisOptions{Hosts: []string{s1.URL(), s2.URL()}, History: []HistoryRule{{Group: "chat_*"}}}
	var lives []<-chan canal.Message
	for range 12 { // twelve processes: their queue keys spread over both hosts
		lives = append(lives, collectGroup(t, newRedisLayer(t, nil, opts), "chat_room"))
	}
	pub := newRedisLayer(t, nil, opts)
	for i := range 3 {
		p, err := pub.Publish(context.Background(), "chat_room", canal.Message{"type": "x"})
		if err != nil || p.Offset != uint64(i+1) {
			t.Fatalf("Publish = %+v, %v", p, err)
		}
		for _, live := range lives {
			if got := mustPos(t, nextMsg(t, live), "chat_room"); got != p {
				t.Fatalf("got %+v, published %+v", got, p)
			}
		}
	}
}
