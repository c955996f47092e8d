package ticket

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/canal-rt/canal"
)

// MemoryOptions configures NewMemory. The zero value is ready to use.
type MemoryOptions struct {
	// DefaultTTL is the lifetime of a ticket issued with ttl <= 0 (DefaultTTL when 0).
	DefaultTTL time.Duration
}

// minSweep is the table size below which Memory never sweeps.
const minSweep = 64

// Memory is a Store in process memory, for demos, single-process deployments and unit
// tests. Like Redis it keeps only hashes of tickets and the encoded value, so the two
// stores behave alike, down to the types found in Attrs.
//
// Expired tickets are removed when consumed, and by a sweep that Issue runs each time
// the table has doubled since the last one: memory stays proportional to the live
// tickets without a background goroutine, at amortized constant cost per Issue.
//
// Concurrency: safe for concurrent use; one mutex guards the table, held only for map
// operations, so Consume succeeds at most once per ticket.
type Memory struct {
	defaultTTL time.Duration
	now        func() time.Time // replaced by tests

	mu      sync.Mutex
	entries map[string]memEntry // by Hash(ticket)
	sweepAt int                 // sweep when len(entries) reaches it
}

type memEntry struct {
	value   []byte // Encode's output
	expires time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory(opts MemoryOptions) *Memory {
	ttl := opts.DefaultTTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Memory{
		defaultTTL: ttl,
		now:        time.Now,
		entries:    make(map[string]memEntry),
		sweepAt:    minSweep,
	}
}

// Issue implements Store.
func (m *Memory) Issue(ctx context.Context, u canal.User, ttl time.Duration) (string, error) {
	if err := ctxErr(ctx); err != nil {
		return "", err
	}
	if ttl <= 0 {
		ttl = m.defaultTTL
	}
	value, err := Encode(u)
	if err != nil {
		return "", err
	}
	for range 3 {
		t, err := New()
		if err != nil {
			return "", err
		}
		h := Hash(t)
		m.mu.Lock()
		now := m.now()
		if len(m.entries) >= m.sweepAt {
			m.sweepLocked(now)
		}
		if _, taken := m.entries[h]; !taken {
			m.entries[h] = memEntry{value: value, expires: now.Add(ttl)}
			m.mu.Unlock()
			return t, nil
		}
		m.mu.Unlock()
	}
	// 256 random bits colliding three times means the random source is broken.
	return "", errors.New("ticket: issue: repeated ticket collisions")
}

// Consume implements Store.
func (m *Memory) Consume(ctx context.Context, ticket string) (canal.User, error) {
	if !wellFormed(ticket) {
		return canal.User{}, ErrInvalid
	}
	if err := ctxErr(ctx); err != nil {
		return canal.User{}, err
	}
	h := Hash(ticket)
	m.mu.Lock()
	e, ok := m.entries[h]
	if ok {
		delete(m.entries, h) // used or expired: gone either way
	}
	now := m.now()
	m.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		return canal.User{}, ErrInvalid
	}
	return Decode(e.value)
}

// sweepLocked deletes expired entries and schedules the next sweep at twice the
// remaining size.
func (m *Memory) sweepLocked(now time.Time) {
	for h, e := range m.entries {
		if !now.Before(e.expires) {
			delete(m.entries, h)
		}
	}
	m.sweepAt = max(minSweep, 2*len(m.entries))
}
