package presence

import (
	"context"
	"sync"
	"time"

	"github.com/canal-rt/canal"
)

// Memory is a Store in process memory, for a single process with layers.NewMemory.
// It holds one record per connection and group, freed when the connection leaves,
// so it is bounded by the server's connection limit times the groups per connection.
//
// Concurrency: safe for concurrent use.
type Memory struct {
	opts Options
	now  func() time.Time

	mu     sync.Mutex
	groups map[string]map[string]conn // group → channel → record
	counts map[string]map[string]int  // group → user ID → connections
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory(opts Options) *Memory {
	return &Memory{opts: opts, now: time.Now, groups: make(map[string]map[string]conn),
		counts: make(map[string]map[string]int)}
}

// Join implements Store.
func (m *Memory) Join(ctx context.Context, group, channel string, u canal.User) (bool, error) {
	if err := checkNames(group, channel); err != nil {
		return false, err
	}
	if u.ID == "" {
		return false, ErrAnonymous
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	rec := conn{ID: u.ID, Username: u.Username, Claims: m.opts.claims(u), At: m.now().UnixMilli()}
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.groups[group]
	if g == nil {
		g = make(map[string]conn)
		m.groups[group] = g
		m.counts[group] = make(map[string]int)
	}
	if old, ok := g[channel]; ok {
		rec.At = old.At
		if old.ID == rec.ID {
			g[channel] = rec
			return false, nil
		}
		m.drop(group, channel) // a channel name reused for another user: start over
	}
	g[channel] = rec
	m.counts[group][u.ID]++
	return m.counts[group][u.ID] == 1, nil
}

// Leave implements Store.
func (m *Memory) Leave(ctx context.Context, group, channel string, _ canal.User) (bool, error) {
	if err := checkNames(group, channel); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drop(group, channel), nil
}

// drop removes a record and reports whether it was its user's last. m.mu is held.
func (m *Memory) drop(group, channel string) bool {
	g := m.groups[group]
	rec, ok := g[channel]
	if !ok {
		return false
	}
	delete(g, channel)
	counts := m.counts[group]
	counts[rec.ID]--
	last := counts[rec.ID] <= 0
	if last {
		delete(counts, rec.ID)
	}
	if len(g) == 0 {
		delete(m.groups, group)
		delete(m.counts, group)
	}
	return last
}

// Presence implements Store.
func (m *Memory) Presence(ctx context.Context, group string) ([]Entry, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	conns := make([]conn, 0, len(m.groups[group]))
	for _, c := range m.groups[group] {
		conns = append(conns, c)
	}
	m.mu.Unlock()
	return aggregate(conns), nil
}

// Len returns the number of groups with someone in them: zero once every connection
// has left.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.groups)
}
