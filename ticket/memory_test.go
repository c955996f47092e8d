package ticket_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/ticket"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	testStore(t, func(*testing.T) ticket.Store { return ticket.NewMemory(ticket.MemoryOptions{}) })
}

// fakeClock is a settable clock for Memory.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newClockedMemory(opts ticket.MemoryOptions) (*ticket.Memory, *fakeClock) {
	m := ticket.NewMemory(opts)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	ticket.SetClock(m, clock.Now)
	return m, clock
}

func TestMemoryTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    ticket.MemoryOptions
		ttl     time.Duration
		elapsed time.Duration
		valid   bool
	}{
		{"zero options default 10s, before", ticket.MemoryOptions{}, 0, 9999 * time.Millisecond, true},
		{"zero options default 10s, at", ticket.MemoryOptions{}, 0, 10 * time.Second, false},
		{"negative ttl is the default", ticket.MemoryOptions{}, -time.Second, 9 * time.Second, true},
		{"custom default", ticket.MemoryOptions{DefaultTTL: time.Minute}, 0, 59 * time.Second, true},
		{"custom default expired", ticket.MemoryOptions{DefaultTTL: time.Minute}, 0, time.Minute, false},
		{"explicit ttl wins", ticket.MemoryOptions{DefaultTTL: time.Minute}, time.Second, 2 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, clock := newClockedMemory(tt.opts)
			tk := issue(t, m, tt.ttl)
			clock.Advance(tt.elapsed)
			_, err := m.Consume(context.Background(), tk)
			if (err == nil) != tt.valid {
				t.Fatalf("Consume after %v: %v; want valid=%v", tt.elapsed, err, tt.valid)
			}
		})
	}
}

// TestMemorySweep checks that expired tickets nobody consumes do not accumulate.
func TestMemorySweep(t *testing.T) {
	t.Parallel()
	m, clock := newClockedMemory(ticket.MemoryOptions{})
	ctx := context.Background()
	u := canal.User{ID: "1", Username: "a"}
	live := make([]string, 0, 10)
	for i := range 10_000 {
		ttl := time.Second
		if i%1000 == 0 {
			ttl = time.Hour // a few survive every sweep
		}
		tk, err := m.Issue(ctx, u, ttl)
		if err != nil {
			t.Fatal(err)
		}
		if ttl == time.Hour {
			live = append(live, tk)
		}
		clock.Advance(time.Millisecond) // 1 s of TTL spans 1000 issues
		if n := ticket.Len(m); n > 2*1000+64+len(live) {
			t.Fatalf("after %d issues the table holds %d entries", i+1, n)
		}
	}
	for _, tk := range live {
		if _, err := m.Consume(ctx, tk); err != nil {
			t.Fatalf("a live ticket was swept: %v", err)
		}
	}
}
