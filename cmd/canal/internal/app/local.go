package app

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/canal-rt/canal"
)

// localLayer is the channel layer plus a process-local index of its groups, for the
// bus: a message published on a raw Redis channel reaches every canal process, so
// each must deliver it to its own sockets only (a GroupSend through a shared Redis
// layer would deliver it once per process). Group calls go to the layer too, so
// Django's group_send reaches the same sockets.
//
// It is a canal.HistoryLayer whatever the layer below: Publish and History go to the
// layer when it keeps history (routes with recover need the interface on the layer
// they are given), else fail with canal.ErrNoHistory (config keeps recover off such
// layers).
//
// The index exists only when a bus needs it (index true): without buses the
// layer's GroupSend is the only way to a socket, and an idle socket costs no index
// entry. It holds one member per attached socket and one entry per (socket, group)
// joined, bounded by the connection limit times a route's max_groups; entries go
// with GroupDiscard or, at the latest, when the socket's channel is detached.
type localLayer struct {
	canal.Layer
	index bool

	mu      sync.RWMutex
	members map[string]*member              // attached channel -> its socket
	groups  map[string]map[*member]struct{} // group -> members
}

// member is an attached socket: its deliver func and the groups it joined (a
// slice: a socket joins a few groups, at most its route's max_groups).
type member struct {
	deliver func(canal.Message) bool
	joined  []string
}

func newLocalLayer(l canal.Layer, index bool) *localLayer {
	return &localLayer{Layer: l, index: index,
		members: map[string]*member{},
		groups:  map[string]map[*member]struct{}{},
	}
}

func (l *localLayer) Attach(ctx context.Context, prefix string, deliver func(canal.Message) bool) (string, func(), error) {
	ch, detach, err := l.Layer.Attach(ctx, prefix, deliver)
	if err != nil || !l.index {
		return ch, detach, err
	}
	l.mu.Lock()
	l.members[ch] = &member{deliver: deliver}
	l.mu.Unlock()
	return ch, func() {
		l.forget(ch)
		detach()
	}, nil
}

func (l *localLayer) forget(ch string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.members[ch]
	if m == nil {
		return
	}
	delete(l.members, ch)
	for _, g := range m.joined {
		l.leaveLocked(g, m)
	}
}

// Publish implements canal.HistoryLayer by delegating to the layer.
func (l *localLayer) Publish(ctx context.Context, group string, msg canal.Message) (canal.Position, error) {
	h, ok := l.Layer.(canal.HistoryLayer)
	if !ok {
		return canal.Position{}, fmt.Errorf("app: publish to %q: layer %T: %w", group, l.Layer, canal.ErrNoHistory)
	}
	return h.Publish(ctx, group, msg)
}

// History implements canal.HistoryLayer by delegating to the layer.
func (l *localLayer) History(ctx context.Context, group string, since canal.Position, limit int) ([]canal.Message, canal.Position, error) {
	h, ok := l.Layer.(canal.HistoryLayer)
	if !ok {
		return nil, canal.Position{}, fmt.Errorf("app: history of %q: layer %T: %w", group, l.Layer, canal.ErrNoHistory)
	}
	return h.History(ctx, group, since, limit)
}

var _ canal.HistoryLayer = (*localLayer)(nil)

func (l *localLayer) GroupAdd(ctx context.Context, group, channel string) error {
	if err := l.Layer.GroupAdd(ctx, group, channel); err != nil {
		return err
	}
	l.remember(channel, group)
	return nil
}

func (l *localLayer) GroupDiscard(ctx context.Context, group, channel string) error {
	l.unremember(channel, group)
	return l.Layer.GroupDiscard(ctx, group, channel)
}

// GroupAddMany implements canal.GroupBatcher: one round trip when the layer batches
// (package consumer joins a connection's groups through it), one call per group
// otherwise.
func (l *localLayer) GroupAddMany(ctx context.Context, groups []string, channel string) error {
	if b, ok := l.Layer.(canal.GroupBatcher); ok {
		if err := b.GroupAddMany(ctx, groups, channel); err != nil {
			return err
		}
		l.remember(channel, groups...)
		return nil
	}
	for _, g := range groups {
		if err := l.GroupAdd(ctx, g, channel); err != nil {
			return err
		}
	}
	return nil
}

// GroupDiscardMany implements canal.GroupBatcher, as GroupAddMany.
func (l *localLayer) GroupDiscardMany(ctx context.Context, groups []string, channel string) error {
	l.unremember(channel, groups...)
	if b, ok := l.Layer.(canal.GroupBatcher); ok {
		return b.GroupDiscardMany(ctx, groups, channel)
	}
	var first error
	for _, g := range groups {
		if err := l.Layer.GroupDiscard(ctx, g, channel); err != nil && first == nil {
			first = err
		}
	}
	return first
}

var _ canal.GroupBatcher = (*localLayer)(nil)

// remember indexes channel in groups when it is a socket of this process.
func (l *localLayer) remember(channel string, groups ...string) {
	if !l.index {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.members[channel]
	if m == nil {
		return // not a socket of this process
	}
	for _, group := range groups {
		if l.groups[group] == nil {
			l.groups[group] = map[*member]struct{}{}
		}
		if _, ok := l.groups[group][m]; !ok {
			l.groups[group][m] = struct{}{}
			m.joined = append(m.joined, group)
		}
	}
}

func (l *localLayer) unremember(channel string, groups ...string) {
	if !l.index {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.members[channel]
	if m == nil {
		return
	}
	for _, group := range groups {
		l.leaveLocked(group, m)
		if i := slices.Index(m.joined, group); i >= 0 {
			m.joined = slices.Delete(m.joined, i, i+1)
		}
	}
}

func (l *localLayer) leaveLocked(group string, m *member) {
	if g := l.groups[group]; g != nil {
		delete(g, m)
		if len(g) == 0 {
			delete(l.groups, group)
		}
	}
}

// publishLocal hands m to this process's members of group, without blocking
// (deliver never blocks: a member whose queue is full misses it, as with a layer's
// GroupSend). It returns how many members took it.
func (l *localLayer) publishLocal(group string, m canal.Message) int {
	l.mu.RLock()
	members := make([]func(canal.Message) bool, 0, len(l.groups[group]))
	for mb := range l.groups[group] {
		members = append(members, mb.deliver)
	}
	l.mu.RUnlock()
	n := 0
	for _, d := range members {
		if d(m) {
			n++
		}
	}
	return n
}
