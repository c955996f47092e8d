package layers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canal-rt/canal"
)

// MemoryOptions configures NewMemory. The zero value gives Channels' defaults.
type MemoryOptions struct {
	// Expiry is how long a queued message waits before it is dropped (0: DefaultExpiry).
	Expiry time.Duration
	// GroupExpiry is how long a group membership lasts without a new GroupAdd
	// (0: DefaultGroupExpiry).
	GroupExpiry time.Duration
	// Capacity is the number of messages a channel queues before Send returns
	// canal.ErrChannelFull (0: DefaultCapacity).
	Capacity int
	// ChannelCapacity overrides Capacity per channel-name glob; the first match wins.
	ChannelCapacity []Capacity
	// History names the groups that keep a history, as RedisOptions.History does
	// (memory_history.go).
	History []HistoryRule
}

// Memory is the in-process channel layer: Channels' InMemoryChannelLayer for one Go
// process. It is the default for demos, tests and single-process servers; processes
// do not share it.
//
// Memory is safe for concurrent use and starts no goroutines. deliver callbacks given
// to Attach run on the goroutine that calls Send or GroupSend, outside the layer's
// locks, so they may call back into the layer.
//
// Behaviour beyond the canal.Layer contract:
//   - Queued messages older than Expiry are dropped lazily, when their channel is
//     sent to or received from; idle empty queues are freed about once per Expiry.
//   - Group members not re-added within GroupExpiry are pruned by GroupSend, and in
//     every group about once per GroupExpiry, so forgotten groups do not pile up.
//   - Send and GroupSend deep-copy msg (maps and slices all the way down; see
//     copyMessage), as Channels' in-memory layer does, so a sender that reuses or
//     changes its map after the call does not change what receivers get: the same
//     isolation a Redis layer gives by serializing. GroupSend makes one copy and
//     hands it to every member, which must treat it as read-only.
//   - A channel made by Attach cannot be read with Receive. Once detached, its name
//     is dead: Send to it succeeds and drops the message, GroupAdd of it does nothing,
//     and GroupSend prunes its memberships, so a connection that forgets to leave its
//     groups costs nothing. Receive on it fails.
//   - After Close every method returns canal.ErrLayerClosed; Close itself is idempotent.
type Memory struct {
	expiry      time.Duration
	groupExpiry time.Duration
	capacity    int
	patterns    []Capacity

	start time.Time // clock origin: times are monotonic offsets from it
	// tag marks the names Attach makes, so the layer recognises a detached channel
	// without remembering every name it ever gave out.
	tag string

	closed atomic.Bool
	done   chan struct{} // closed by Close: wakes blocked receivers

	// Lock order: gmu before mu before memQueue.mu. Never held while calling deliver.
	mu        sync.RWMutex
	queues    map[string]*memQueue
	listeners map[string]*memListener
	lastSweep time.Duration

	gmu            sync.RWMutex
	groups         map[string]*memGroup
	lastGroupSweep time.Duration

	hist memHistory // groups with history (memory_history.go)
}

var _ canal.Layer = (*Memory)(nil)

// memEntry is a queued message and the time it was sent.
type memEntry struct {
	msg canal.Message
	at  time.Duration
}

// memQueue is one channel's FIFO. Receivers that find it empty wait on a token
// channel of their own, so a message wakes one receiver rather than all of them.
type memQueue struct {
	mu       sync.Mutex
	items    []memEntry
	head     int
	capacity int
	refs     int             // receivers using the queue: it is not freed while > 0
	waiters  []chan struct{} // FIFO of blocked receivers, each with a 1-buffered token
}

// memListener is an attached channel's callback.
type memListener struct {
	deliver  func(canal.Message) bool
	detached atomic.Bool
}

// memMember is a group membership. l caches the member's listener so GroupSend to
// attached channels needs no per-member map lookup.
type memMember struct {
	channel string
	joined  time.Duration
	l       *memListener
}

// memGroup keeps members in a slice (fast fan-out) indexed by name (O(1) add/discard).
type memGroup struct {
	members []memMember
	index   map[string]int
}

// targetPool recycles GroupSend's list of listeners so fan-out does not allocate.
var targetPool = sync.Pool{New: func() any { return new([]*memListener) }}

// NewMemory returns an in-memory layer. Negative durations or capacities, or a bad
// ChannelCapacity entry, are errors.
func NewMemory(opts MemoryOptions) (*Memory, error) {
	switch {
	case opts.Expiry < 0:
		return nil, fmt.Errorf("layers: memory: negative Expiry %v", opts.Expiry)
	case opts.GroupExpiry < 0:
		return nil, fmt.Errorf("layers: memory: negative GroupExpiry %v", opts.GroupExpiry)
	case opts.Capacity < 0:
		return nil, fmt.Errorf("layers: memory: negative Capacity %d", opts.Capacity)
	}
	if err := validateCapacities(opts.ChannelCapacity); err != nil {
		return nil, err
	}
	rules, err := newHistoryRules("memory", opts.History)
	if err != nil {
		return nil, err
	}
	m := &Memory{
		hist:        memHistory{rules: rules, groups: make(map[string]*memGroupHistory)},
		expiry:      cmp.Or(opts.Expiry, DefaultExpiry),
		groupExpiry: cmp.Or(opts.GroupExpiry, DefaultGroupExpiry),
		capacity:    cmp.Or(opts.Capacity, DefaultCapacity),
		patterns:    append([]Capacity(nil), opts.ChannelCapacity...), // caller may reuse its slice
		start:       time.Now(),
		tag:         randomHex(6),
		done:        make(chan struct{}),
		queues:      make(map[string]*memQueue),
		listeners:   make(map[string]*memListener),
		groups:      make(map[string]*memGroup),
	}
	return m, nil
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return hex.EncodeToString(b)
}

func (m *Memory) now() time.Duration { return time.Since(m.start) }

// isAttachName reports whether name was made by this layer's Attach (attached or not).
func (m *Memory) isAttachName(name string) bool {
	i := strings.IndexByte(name, '!')
	if i < 0 {
		return false
	}
	local := name[i+1:]
	return len(local) > len(m.tag) && local[len(m.tag)] == '.' && local[:len(m.tag)] == m.tag
}

// begin runs the checks every method starts with.
func (m *Memory) begin(ctx context.Context) error {
	if m.closed.Load() {
		return canal.ErrLayerClosed
	}
	return ctx.Err()
}

func localName(prefix string, local string) (string, error) {
	if prefix == "" {
		prefix = "specific"
	}
	name := prefix + ".inmemory!" + local
	if err := ValidChannelName(name); err != nil {
		return "", fmt.Errorf("layers: prefix %q: %w", prefix, err)
	}
	return name, nil
}

// NewChannel returns "<prefix>.inmemory!<32 hex>" (prefix "specific" when empty). The
// queue is made on first use, so an unused name costs nothing.
func (m *Memory) NewChannel(ctx context.Context, prefix string) (string, error) {
	if err := m.begin(ctx); err != nil {
		return "", err
	}
	return localName(prefix, randomHex(16))
}

// Attach returns "<prefix>.inmemory!<layer tag>.<24 hex>", whose messages go to
// deliver. detach is idempotent; it stops new deliveries but does not wait for a
// deliver call already running on another goroutine, so deliver must stay safe to
// call briefly after detach (select on a done channel rather than closing the one
// it sends to). Waiting would deadlock a deliver that detaches its own channel.
func (m *Memory) Attach(ctx context.Context, prefix string, deliver func(canal.Message) bool) (string, func(), error) {
	if err := m.begin(ctx); err != nil {
		return "", nil, err
	}
	if deliver == nil {
		return "", nil, errors.New("layers: attach: nil deliver func")
	}
	name, err := localName(prefix, m.tag+"."+randomHex(12))
	if err != nil {
		return "", nil, err
	}
	l := &memListener{deliver: deliver}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return "", nil, canal.ErrLayerClosed
	}
	for m.listeners[name] != nil { // 96 random bits: a clash is theoretical
		name = name[:len(name)-24] + randomHex(12)
	}
	m.listeners[name] = l
	detach := func() {
		if !l.detached.CompareAndSwap(false, true) {
			return
		}
		m.mu.Lock()
		if m.listeners[name] == l {
			delete(m.listeners, name)
		}
		m.mu.Unlock()
	}
	return name, detach, nil
}

// Send queues msg on channel, or hands it to the channel's deliver func when attached.
func (m *Memory) Send(ctx context.Context, channel string, msg canal.Message) error {
	if err := ValidChannelName(channel); err != nil {
		return fmt.Errorf("layers: send: %w", err)
	}
	if err := msg.ValidateType(); err != nil {
		return fmt.Errorf("layers: send to %q: %w", channel, err)
	}
	if err := m.begin(ctx); err != nil {
		return err
	}
	if m.isAttachName(channel) {
		m.mu.RLock()
		l := m.listeners[channel]
		m.mu.RUnlock()
		if l == nil || l.detached.Load() {
			return nil // detached: the channel is gone, drop
		}
		if !l.deliver(copyMessage(msg)) {
			return fmt.Errorf("layers: send to %q: %w", channel, canal.ErrChannelFull)
		}
		return nil
	}
	msg = copyMessage(msg)
	now := m.now()
	m.mu.RLock()
	q := m.queues[channel]
	var ok bool
	if q != nil {
		ok = q.push(msg, now, m.expiry)
	}
	m.mu.RUnlock()
	if q == nil {
		// First use of this channel: create its queue under the write lock.
		m.mu.Lock()
		if m.closed.Load() {
			m.mu.Unlock()
			return canal.ErrLayerClosed
		}
		ok = m.queueLocked(channel, now).push(msg, now, m.expiry)
		m.mu.Unlock()
	}
	if !ok {
		return fmt.Errorf("layers: send to %q: %w", channel, canal.ErrChannelFull)
	}
	return nil
}

// queueLocked returns channel's queue, creating it; m.mu must be write-locked.
// Creating is also when idle queues are swept, at most once per Expiry: only churn
// creates queues, so this bounds memory without a background goroutine.
func (m *Memory) queueLocked(channel string, now time.Duration) *memQueue {
	if q := m.queues[channel]; q != nil {
		return q
	}
	if now-m.lastSweep >= m.expiry {
		m.lastSweep = now
		for name, q := range m.queues {
			q.mu.Lock()
			q.prune(now, m.expiry)
			if q.refs == 0 && q.head == len(q.items) {
				delete(m.queues, name)
			}
			q.mu.Unlock()
		}
	}
	q := &memQueue{capacity: capacityFor(channel, m.patterns, m.capacity)}
	m.queues[channel] = q
	return q
}

// prune drops expired messages from the head; q.mu must be held. Messages are
// appended in (nearly) time order, so the expired ones are at the front.
func (q *memQueue) prune(now, expiry time.Duration) {
	for q.head < len(q.items) && now-q.items[q.head].at >= expiry {
		q.items[q.head] = memEntry{} // let the message be collected
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
}

// push appends msg unless the queue is full, and wakes one waiting receiver.
func (q *memQueue) push(msg canal.Message, now, expiry time.Duration) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.prune(now, expiry)
	if len(q.items)-q.head >= q.capacity {
		return false
	}
	if q.head > 0 && len(q.items) == cap(q.items) {
		// Reuse the space of consumed messages instead of growing.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, memEntry{msg: msg, at: now})
	q.wakeOne()
	return true
}

// wakeOne passes a token to the longest-waiting receiver; q.mu must be held.
func (q *memQueue) wakeOne() {
	if len(q.waiters) == 0 {
		return
	}
	w := q.waiters[0]
	q.waiters[0] = nil
	q.waiters = q.waiters[1:]
	w <- struct{}{} // buffered 1 and each waiter is signalled once: never blocks
}

// Receive returns the next message of channel, waiting until one arrives, ctx is
// done (ctx.Err()) or the layer is closed (canal.ErrLayerClosed). With several
// receivers on one channel each message goes to exactly one of them, first come
// first served.
func (m *Memory) Receive(ctx context.Context, channel string) (canal.Message, error) {
	if err := ValidChannelName(channel); err != nil {
		return nil, fmt.Errorf("layers: receive: %w", err)
	}
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	if m.isAttachName(channel) {
		return nil, fmt.Errorf("layers: receive: %w: %q is an Attach channel; its messages go to its deliver func",
			canal.ErrInvalidName, channel)
	}
	q := m.acquire(channel)
	if q == nil {
		return nil, canal.ErrLayerClosed
	}
	defer m.release(q)

	return q.pop(ctx, m.now, m.expiry, m.done)
}

// pop waits for the queue's next unexpired message, for ctx, or for done (the layer
// closed). Every layer's local queues use it.
func (q *memQueue) pop(ctx context.Context, now func() time.Duration, expiry time.Duration, done <-chan struct{}) (canal.Message, error) {
	var wake chan struct{}
	for {
		q.mu.Lock()
		q.prune(now(), expiry)
		if q.head < len(q.items) {
			msg := q.items[q.head].msg
			q.items[q.head] = memEntry{}
			q.head++
			if q.head == len(q.items) {
				q.items, q.head = q.items[:0], 0
			}
			q.mu.Unlock()
			return msg, nil
		}
		if wake == nil {
			wake = make(chan struct{}, 1)
		}
		q.waiters = append(q.waiters, wake)
		q.mu.Unlock()

		select {
		case <-wake:
			// A message arrived; another receiver may still take it first: retry.
		case <-ctx.Done():
			q.cancelWait(wake)
			return nil, ctx.Err()
		case <-done:
			return nil, canal.ErrLayerClosed
		}
	}
}

// cancelWait unregisters a receiver that gives up. If it was already woken, its
// token is passed on so the message it was woken for does not wait for a new send.
func (q *memQueue) cancelWait(wake chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, w := range q.waiters {
		if w == wake {
			last := len(q.waiters) - 1
			copy(q.waiters[i:], q.waiters[i+1:])
			q.waiters[last] = nil
			q.waiters = q.waiters[:last]
			return
		}
	}
	<-wake
	if q.head < len(q.items) {
		q.wakeOne()
	}
}

// acquire returns channel's queue, created if needed, pinned against the sweep.
func (m *Memory) acquire(channel string) *memQueue {
	m.mu.RLock()
	q := m.queues[channel]
	if q != nil {
		q.mu.Lock()
		q.refs++
		q.mu.Unlock()
	}
	m.mu.RUnlock()
	if q != nil {
		return q
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil
	}
	q = m.queueLocked(channel, m.now())
	q.mu.Lock()
	q.refs++
	q.mu.Unlock()
	return q
}

func (m *Memory) release(q *memQueue) {
	q.mu.Lock()
	q.refs--
	q.mu.Unlock()
}

// GroupAdd adds channel to group, or refreshes its join time.
func (m *Memory) GroupAdd(ctx context.Context, group, channel string) error {
	if err := ValidGroupName(group); err != nil {
		return fmt.Errorf("layers: group add: %w", err)
	}
	if err := ValidChannelName(channel); err != nil {
		return fmt.Errorf("layers: group add: %w", err)
	}
	if err := m.begin(ctx); err != nil {
		return err
	}
	var l *memListener
	if m.isAttachName(channel) {
		m.mu.RLock()
		l = m.listeners[channel]
		m.mu.RUnlock()
		if l == nil {
			return nil // detached: the channel is gone, membership would be dead weight
		}
	}
	now := m.now()

	m.gmu.Lock()
	defer m.gmu.Unlock()
	if m.closed.Load() {
		return canal.ErrLayerClosed
	}
	g := m.groups[group]
	if g == nil {
		// New groups come with churn: the moment to sweep expired memberships.
		if now-m.lastGroupSweep >= m.groupExpiry {
			m.lastGroupSweep = now
			for name, g := range m.groups {
				if m.pruneLocked(g, now) {
					delete(m.groups, name)
				}
			}
		}
		g = &memGroup{index: make(map[string]int)}
		m.groups[group] = g
	}
	if i, ok := g.index[channel]; ok {
		g.members[i].joined, g.members[i].l = now, l
		return nil
	}
	g.index[channel] = len(g.members)
	g.members = append(g.members, memMember{channel: channel, joined: now, l: l})
	return nil
}

// GroupDiscard removes channel from group; it is silent when either is absent.
func (m *Memory) GroupDiscard(ctx context.Context, group, channel string) error {
	if err := ValidGroupName(group); err != nil {
		return fmt.Errorf("layers: group discard: %w", err)
	}
	if err := ValidChannelName(channel); err != nil {
		return fmt.Errorf("layers: group discard: %w", err)
	}
	if err := m.begin(ctx); err != nil {
		return err
	}
	m.gmu.Lock()
	defer m.gmu.Unlock()
	g := m.groups[group]
	if g == nil {
		return nil
	}
	i, ok := g.index[channel]
	if !ok {
		return nil
	}
	last := len(g.members) - 1
	if i != last {
		g.members[i] = g.members[last]
		g.index[g.members[i].channel] = i
	}
	g.members[last] = memMember{}
	g.members = g.members[:last]
	delete(g.index, channel)
	if len(g.members) == 0 {
		delete(m.groups, group)
	}
	return nil
}

// GroupSend sends msg to every current member of group: attached members through
// deliver, others onto their queues. Full members are skipped silently; an unknown
// group is a no-op. All members share one copy of msg. A group with a history rule
// is published to instead (Publish).
func (m *Memory) GroupSend(ctx context.Context, group string, msg canal.Message) error {
	if rule := m.hist.rules.rule(group); rule != nil { // history hook (memory_history.go)
		if err := checkPublish(group, msg); err != nil {
			return err
		}
		if err := m.begin(ctx); err != nil {
			return err
		}
		_, err := m.publish(ctx, group, msg, rule)
		return err
	}
	if err := ValidGroupName(group); err != nil {
		return fmt.Errorf("layers: group send: %w", err)
	}
	if err := msg.ValidateType(); err != nil {
		return fmt.Errorf("layers: group send to %q: %w", group, err)
	}
	if err := m.begin(ctx); err != nil {
		return err
	}
	return m.groupSend(ctx, group, copyMessage(msg)) // one copy for all members: they treat it as read-only
}

// groupSend delivers msg, the layer's own copy, to group's members.
func (m *Memory) groupSend(ctx context.Context, group string, msg canal.Message) error {
	now := m.now()

	tp := targetPool.Get().(*[]*memListener)
	targets := (*tp)[:0]
	var missing []string // members with no queue yet: rare, handled after the read locks
	prune := false       // expired or detached members seen

	m.gmu.RLock()
	if g := m.groups[group]; g != nil {
		queued := false
		for i := range g.members {
			mb := &g.members[i]
			if now-mb.joined >= m.groupExpiry {
				prune = true
				continue
			}
			if mb.l != nil {
				if mb.l.detached.Load() {
					prune = true
				} else {
					targets = append(targets, mb.l)
				}
				continue
			}
			if !queued {
				// Lock order gmu → mu; taken once for all queued members.
				m.mu.RLock()
				queued = true
			}
			if q := m.queues[mb.channel]; q != nil {
				q.push(msg, now, m.expiry) // full: skipped, as Channels does
			} else {
				missing = append(missing, mb.channel)
			}
		}
		if queued {
			m.mu.RUnlock()
		}
	}
	m.gmu.RUnlock()

	if len(missing) > 0 {
		m.mu.Lock()
		if !m.closed.Load() {
			for _, name := range missing {
				m.queueLocked(name, now).push(msg, now, m.expiry)
			}
		}
		m.mu.Unlock()
	}
	if prune {
		m.gmu.Lock()
		if g := m.groups[group]; g != nil && m.pruneLocked(g, now) {
			delete(m.groups, group)
		}
		m.gmu.Unlock()
	}

	// No lock is held here, so deliver may call back into the layer.
	for _, l := range targets {
		if !l.detached.Load() { // detached since it was collected
			l.deliver(msg) // false means full: skipped
		}
	}
	clear(targets) // drop references before pooling
	*tp = targets[:0]
	targetPool.Put(tp)
	return nil
}

// pruneLocked removes g's expired members and those of detached channels, and
// reports whether g is now empty; m.gmu must be write-locked.
func (m *Memory) pruneLocked(g *memGroup, now time.Duration) (empty bool) {
	kept := g.members[:0]
	for _, mb := range g.members {
		if now-mb.joined >= m.groupExpiry || mb.l != nil && mb.l.detached.Load() {
			delete(g.index, mb.channel)
			continue
		}
		g.index[mb.channel] = len(kept)
		kept = append(kept, mb)
	}
	clear(g.members[len(kept):])
	g.members = kept
	return len(kept) == 0
}

// Flush drops every queued message and every group. Attached channels stay attached
// and blocked receivers keep waiting.
func (m *Memory) Flush(ctx context.Context) error {
	if err := m.begin(ctx); err != nil {
		return err
	}
	m.gmu.Lock()
	m.groups = make(map[string]*memGroup)
	m.gmu.Unlock()
	m.hist.flush() // new epochs (memory_history.go)

	m.mu.Lock()
	defer m.mu.Unlock()
	for name, q := range m.queues {
		q.mu.Lock()
		clear(q.items)
		q.items, q.head = q.items[:0], 0
		if q.refs == 0 {
			delete(m.queues, name)
		}
		q.mu.Unlock()
	}
	return nil
}

// Close wakes blocked receivers with canal.ErrLayerClosed, stops deliveries and frees
// everything. Later calls return canal.ErrLayerClosed, except Close, which returns
// nil again. It never blocks, so ctx is unused.
func (m *Memory) Close(ctx context.Context) error {
	m.gmu.Lock()
	defer m.gmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(m.done)
	for _, l := range m.listeners {
		l.detached.Store(true)
	}
	m.listeners = make(map[string]*memListener)
	m.queues = make(map[string]*memQueue)
	m.groups = make(map[string]*memGroup)
	return nil
}

// copyMaxDepth bounds copyValue's recursion: deeper values (or a map that contains
// itself) are shared instead of copied, rather than recursing forever.
const copyMaxDepth = 64

// copyMessage returns a deep copy of msg, as Channels' in-memory layer deep-copies a
// message on send: a Redis layer serializes it, so a sender that changes its map after
// Send must not change what the receiver gets with the memory layer either.
//
// Maps and slices of any type, and []byte, are copied all the way down; other values
// (strings, numbers, and what pointers, structs and channels refer to) are shared:
// the first are immutable, and the others cannot cross a Redis layer anyway.
func copyMessage(msg canal.Message) canal.Message {
	out := make(canal.Message, len(msg))
	for k, v := range msg {
		out[k] = copyValue(v, 0)
	}
	return out
}

func copyValue(v any, depth int) any {
	if depth >= copyMaxDepth {
		return v
	}
	switch x := v.(type) {
	case nil, string, bool, int, int64, uint64, float64, int32, uint32, float32:
		return v
	case []byte:
		if x == nil {
			return x
		}
		return bytes.Clone(x)
	case map[string]any:
		if x == nil {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = copyValue(e, depth+1)
		}
		return out
	case canal.Message:
		if x == nil {
			return x
		}
		out := make(canal.Message, len(x))
		for k, e := range x {
			out[k] = copyValue(e, depth+1)
		}
		return out
	case []any:
		if x == nil {
			return x
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyValue(e, depth+1)
		}
		return out
	case []string:
		if x == nil {
			return x
		}
		return append([]string(nil), x...)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map, reflect.Slice:
		if rv.IsNil() {
			return v
		}
		return copyReflect(rv, depth).Interface()
	}
	return v
}

// copyReflect copies a non-nil map or slice of any type (map[string]string, []int,
// []map[string]any, ...).
func copyReflect(rv reflect.Value, depth int) reflect.Value {
	elem := func(e reflect.Value) reflect.Value {
		c := copyValue(e.Interface(), depth+1)
		if c == nil {
			return reflect.Zero(e.Type()) // a nil interface element stays one
		}
		return reflect.ValueOf(c)
	}
	if rv.Kind() == reflect.Map {
		out := reflect.MakeMapWithSize(rv.Type(), rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), elem(it.Value()))
		}
		return out
	}
	out := reflect.MakeSlice(rv.Type(), rv.Len(), rv.Len())
	for i := range rv.Len() {
		out.Index(i).Set(elem(rv.Index(i)))
	}
	return out
}
