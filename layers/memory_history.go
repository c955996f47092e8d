package layers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/canal-rt/canal"
)

// Group history in the memory layer (MemoryOptions.History): the Redis layer's
// semantics (redis_history.go) for one process. Each group with a rule has an epoch
// (new when the layer starts, after Flush, and once the group has been quiet for
// its rule's metaTTL), a last offset, and its last Size messages, none older than
// TTL.
//
// Publish holds the group's publish lock while it appends the entry and delivers it,
// so live copies arrive in offset order, and the entry is in the history before the
// members are read: a subscriber that joins, then reads History, gets every message
// either live or from the history (possibly both; history.Recovery drops the second).
// Hence deliver funcs must not Publish to the same group synchronously.

// memHistory is the layer's histories.
type memHistory struct {
	rules historyRules

	mu        sync.Mutex // guards groups and lastSweep
	groups    map[string]*memGroupHistory
	lastSweep time.Duration
}

// memGroupHistory is one group's history.
type memGroupHistory struct {
	pub sync.Mutex // held by Publish across append and delivery: live order

	mu      sync.Mutex // guards the fields below
	epoch   string
	last    uint64
	touched time.Duration  // last Publish or History: the epoch lives metaTTL from it
	entries []memHistEntry // oldest first, at most the rule's Size
}

type memHistEntry struct {
	msg canal.Message // the sender's copy: shared read-only by every reader
	at  time.Duration
}

// group returns group's history, making it (or a new epoch of it) when needed.
func (h *memHistory) group(group string, rule *HistoryRule, now time.Duration) *memGroupHistory {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now-h.lastSweep > time.Minute { // forget quiet groups: bounded by groups active within metaTTL
		h.lastSweep = now
		for name, g := range h.groups {
			g.mu.Lock()
			expired := now-g.touched > h.rules.rule(name).metaTTL()
			g.mu.Unlock()
			if expired {
				delete(h.groups, name)
			}
		}
	}
	g := h.groups[group]
	if g == nil {
		g = &memGroupHistory{epoch: randomHex(8), touched: now}
		h.groups[group] = g
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked(rule, now)
	return g
}

// expireLocked applies rule's bounds at now: a quiet group gets a new epoch (its
// meta expired, as a Redis key would), old entries go.
func (g *memGroupHistory) expireLocked(rule *HistoryRule, now time.Duration) {
	if now-g.touched > rule.metaTTL() {
		g.epoch, g.last, g.entries = randomHex(8), 0, nil
	}
	i := 0
	for i < len(g.entries) && now-g.entries[i].at >= rule.TTL {
		i++
	}
	if i > 0 {
		g.entries = append(g.entries[:0], g.entries[i:]...)
	}
	g.touched = now
}

// flush drops every history: new epochs.
func (h *memHistory) flush() {
	h.mu.Lock()
	h.groups = make(map[string]*memGroupHistory)
	h.mu.Unlock()
}

// Publish sends msg to group's members as GroupSend does and appends it to the
// group's history, returning its position; every member gets it with the position
// under canal.PositionKey. A group no History rule names: canal.ErrNoHistory.
func (m *Memory) Publish(ctx context.Context, group string, msg canal.Message) (canal.Position, error) {
	if err := checkPublish(group, msg); err != nil {
		return canal.Position{}, err
	}
	if err := m.begin(ctx); err != nil {
		return canal.Position{}, err
	}
	rule := m.hist.rules.rule(group)
	if rule == nil {
		return canal.Position{}, errNoHistory("publish to", group)
	}
	return m.publish(ctx, group, msg, rule)
}

func (m *Memory) publish(ctx context.Context, group string, msg canal.Message, rule *HistoryRule) (canal.Position, error) {
	msg = copyMessage(msg)
	now := m.now()
	g := m.hist.group(group, rule, now)
	g.pub.Lock()
	defer g.pub.Unlock()
	g.mu.Lock()
	g.expireLocked(rule, now)
	g.last++
	pos := canal.Position{Offset: g.last, Epoch: g.epoch}
	if len(g.entries) == rule.Size {
		g.entries = append(g.entries[:0], g.entries[1:]...)
	}
	g.entries = append(g.entries, memHistEntry{msg: msg, at: now})
	g.mu.Unlock()
	return pos, m.groupSend(ctx, group, canal.WithPosition(msg, group, pos))
}

// History returns group's messages after since (see canal.HistoryLayer): at most
// limit, and never more than 1,000 at once (limit <= 0: up to 1,000).
func (m *Memory) History(ctx context.Context, group string, since canal.Position, limit int) ([]canal.Message, canal.Position, error) {
	if err := ValidGroupName(group); err != nil {
		return nil, canal.Position{}, fmt.Errorf("layers: history: %w", err)
	}
	if err := m.begin(ctx); err != nil {
		return nil, canal.Position{}, err
	}
	rule := m.hist.rules.rule(group)
	if rule == nil {
		return nil, canal.Position{}, errNoHistory("history of", group)
	}
	if limit <= 0 || limit > historyPage {
		limit = historyPage
	}
	now := m.now()
	g := m.hist.group(group, rule, now)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked(rule, now)
	head := canal.Position{Offset: g.last, Epoch: g.epoch}
	switch {
	case since.Epoch == "" || since == head:
		return nil, head, nil
	case since.Epoch != g.epoch || since.Offset > g.last:
		return nil, head, errNotRecovered(group, since)
	}
	first := g.last - uint64(len(g.entries)) + 1 // offset of entries[0]
	if len(g.entries) == 0 || since.Offset+1 < first {
		return nil, head, errNotRecovered(group, since)
	}
	rest := g.entries[since.Offset+1-first:]
	rest = rest[:min(len(rest), limit)]
	out := make([]canal.Message, len(rest))
	for i, e := range rest {
		out[i] = canal.WithPosition(e.msg, group, canal.Position{Offset: since.Offset + 1 + uint64(i), Epoch: g.epoch})
	}
	return out, head, nil
}

var _ canal.HistoryLayer = (*Memory)(nil)
var _ canal.HistoryLayer = (*Redis)(nil)
