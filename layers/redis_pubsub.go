package layers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/redisconn"
)

// RedisPubSub is a channel layer on Redis Pub/Sub, wire-compatible with
// channels_redis.pubsub.RedisPubSubChannelLayer: channels are Pub/Sub channels named
// "<prefix>specific.<32 hex>", a group is the Pub/Sub channel
// "<prefix>__group__<group>", messages are bare msgpack (no random prefix, no
// __asgi_channel__), and membership lives in each process, which subscribes to a
// group while it has members in it. Names are sharded over hosts by channels_redis'
// CRC function of the Pub/Sub channel name.
//
// Pub/Sub stores nothing: a message reaches the processes subscribed at that moment
// and is lost otherwise, while a connection is down included. Each host has one
// subscriber connection, whose reader hands messages to attached channels' deliver
// funcs or to bounded in-memory queues read by Receive; it never waits for a
// consumer. After a disconnection the layer reconnects with backoff and subscribes
// again to everything, counting it in Stats().Reconnects and logging the gap.
//
// Behaviour beyond the canal.Layer contract (and channels_redis.pubsub's):
//   - GroupAdd takes only channels of this process (made by NewChannel or Attach, or
//     read with Receive); others are refused with canal.ErrInvalidName, as Django does.
//   - Receive on any name subscribes to it; every process receiving a name gets
//     every message published to it (Pub/Sub fans out, it does not share work).
//     A channel nobody has read for Expiry is unsubscribed and leaves its groups.
//   - Detaching an Attach channel unsubscribes it and removes it from its groups.
//   - Flush forgets every group and drops queued messages; channels stay subscribed.
//
// Delivery guarantee: at most once. A message reaches the processes whose
// subscription is in place when Redis handles the PUBLISH; nothing published while a
// subscriber connection is down is delivered later. OnReconnect (and
// Stats().Reconnects) reports every such gap, with its length.
//
// In Cluster mode (RedisPubSubOptions.Cluster) the layer uses sharded Pub/Sub: Send
// and GroupSend are SPUBLISH, routed by the cluster client to the master that owns
// the Pub/Sub channel's slot, and the layer keeps one subscriber connection per
// master, SSUBSCRIBEd to the channels whose slots that master owns. Guarantees:
//   - Messages published to one channel by one sender arrive in order; there is no
//     order across channels (they may live on different masters).
//   - A message is delivered by the master that owns the slot (and its replicas), not
//     broadcast over the cluster bus; while that master is down, Send and GroupSend to
//     its slots fail with canal.ErrUnavailable, and subscriptions there are restored
//     when it (or the replica that replaces it) answers again.
//   - When a slot moves (resharding, failover), Redis unsubscribes its channels; the
//     layer subscribes them again on the new owner. Messages published in between are
//     lost and the gap is reported through OnReconnect.
//
// In Sentinel mode (RedisPubSubOptions.Sentinel) publishing and subscribing go to the
// master the sentinels name; after a failover the subscriber connection is
// re-established on the new master, and what was published meanwhile is lost.
type RedisPubSub struct {
	// hosts (redis_base.go) publish; in Cluster mode hosts[0] is the cluster client,
	// for SPUBLISH and CLUSTER SLOTS.
	*redisBase

	// shards are the subscriber connections: one per host, or in Cluster mode one per
	// master met so far, under nmu.
	shards []*pubsubHost

	mu     sync.RWMutex
	chans  map[string]*pubsubChan
	groups map[string]map[string]struct{} // group Pub/Sub channel → member channels

	// unsubscribes queued by detach for the janitor, which does the I/O.
	pendingMu sync.Mutex
	pending   []string
	wake      chan struct{}

	// Cluster mode.
	hook    func(*rueidis.ClientOption) // for the masters' subscriber clients
	slots   atomic.Pointer[clusterSlots]
	slotsAt atomic.Int64 // last refresh attempt, Unix nanoseconds
	nmu     sync.Mutex
	nodes   map[string]*pubsubHost // by master address
	// stray holds channels to subscribe again (their slot moved, or their master's
	// connection came back on another owner), with when they were lost; under
	// pendingMu, handled by the janitor.
	stray map[string]time.Time
}

var _ canal.Layer = (*RedisPubSub)(nil)

// pubsubChan is a channel this process is subscribed to.
type pubsubChan struct {
	name     string
	listener *redisListener // Attach
	queue    *memQueue      // Receive
	lastUsed time.Duration  // under RedisPubSub.mu
	groups   map[string]struct{}
}

// NewRedisPubSub connects to every host (a client and a subscriber connection each)
// and returns the layer. Unreachable hosts give an error wrapping canal.ErrUnavailable.
func NewRedisPubSub(ctx context.Context, opts RedisPubSubOptions) (*RedisPubSub, error) {
	base, err := newRedisBase(ctx, "redis pubsub", opts.common())
	if err != nil {
		return nil, err
	}
	base.opPrefix = "pubsub: "
	r := &RedisPubSub{
		redisBase: base,
		chans:     make(map[string]*pubsubChan),
		groups:    make(map[string]map[string]struct{}),
		wake:      make(chan struct{}, 1),
	}
	fail := func(err error) (*RedisPubSub, error) {
		for _, h := range r.shards {
			if h.dc != nil {
				h.dc.Close()
			}
		}
		r.abort()
		return nil, err
	}
	if r.cluster {
		r.hook = opts.ClientOptions
		r.nodes = make(map[string]*pubsubHost)
		slots, err := loadClusterSlots(ctx, r.hosts[0].client)
		if err != nil {
			return fail(fmt.Errorf("layers: redis pubsub: CLUSTER SLOTS: %w: %w", canal.ErrUnavailable, err))
		}
		r.slots.Store(slots)
		// Subscriber connections are made per master on first use.
	} else {
		for _, h := range r.hosts {
			r.shards = append(r.shards, newPubSubHost(h.name, "", h.client))
		}
	}
	for i, h := range r.shards {
		if err := r.connect(ctx, h); err != nil {
			return fail(fmt.Errorf("layers: redis pubsub: host %d: subscriber connection: %w: %w", i, canal.ErrUnavailable, err))
		}
	}
	for _, h := range r.shards {
		r.wg.Add(2)
		go r.supervise(h)
		go r.dispatch(h)
	}
	r.wg.Add(1)
	go r.janitor()
	return r, nil
}

// sweep forgets Receive channels nobody has read for Expiry.
func (r *RedisPubSub) sweep() {
	now := r.localNow()
	var idle []string
	r.mu.Lock()
	for name, c := range r.chans {
		if c.queue == nil {
			continue
		}
		q := c.queue
		q.mu.Lock()
		q.prune(now, r.expiry)
		free := q.refs == 0 && q.head == len(q.items)
		q.mu.Unlock()
		if free && now-c.lastUsed >= r.expiry {
			idle = append(idle, r.forgetLocked(name)...)
			idle = append(idle, name)
		}
	}
	r.mu.Unlock()
	for _, name := range idle {
		r.unsubscribe(r.ctx, name)
	}
}

// forgetLocked removes channel name and its memberships; it returns the groups left
// empty, to unsubscribe. r.mu must be write-locked.
func (r *RedisPubSub) forgetLocked(name string) []string {
	c := r.chans[name]
	if c == nil {
		return nil
	}
	delete(r.chans, name)
	var empty []string
	for g := range c.groups {
		members := r.groups[g]
		delete(members, name)
		if len(members) == 0 {
			delete(r.groups, g)
			empty = append(empty, g)
		}
	}
	return empty
}

// isAttachName reports whether name was made by this layer's Attach.
func (r *RedisPubSub) isAttachName(name string) bool {
	i := strings.LastIndexByte(name, '.')
	return i >= 0 && isAttachLocal(r.seed, name[i+1:])
}

// localName returns "<layer prefix><prefix>.<local>", as channels_redis' new_channel.
func (r *RedisPubSub) localName(prefix, local string) (string, error) {
	if prefix == "" {
		prefix = "specific"
	}
	name := r.prefix + prefix + "." + local
	if err := ValidChannelName(name); err != nil {
		return "", fmt.Errorf("layers: prefix %q: %w", prefix, err)
	}
	return name, nil
}

// addChan registers and subscribes a new local channel.
func (r *RedisPubSub) addChan(ctx context.Context, c *pubsubChan) error {
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return canal.ErrLayerClosed
	}
	if r.chans[c.name] != nil {
		r.mu.Unlock()
		return fmt.Errorf("layers: redis pubsub: channel %q exists", c.name) // 128 random bits: never
	}
	c.lastUsed = r.localNow()
	r.chans[c.name] = c
	r.mu.Unlock()
	if err := r.subscribe(ctx, c.name); err != nil {
		r.mu.Lock()
		if r.chans[c.name] == c {
			delete(r.chans, c.name)
		}
		r.mu.Unlock()
		return err
	}
	return nil
}

// NewChannel returns "<layer prefix><prefix>.<32 hex>" ("asgispecific.…" by default),
// subscribed at once, read with Receive.
func (r *RedisPubSub) NewChannel(ctx context.Context, prefix string) (string, error) {
	if err := r.begin(ctx); err != nil {
		return "", err
	}
	name, err := r.localName(prefix, r.newLocalID())
	if err != nil {
		return "", err
	}
	c := &pubsubChan{name: name, queue: r.newQueue(name), groups: map[string]struct{}{}}
	if err := r.addChan(ctx, c); err != nil {
		return "", err
	}
	return name, nil
}

// Attach returns a new subscribed channel whose messages go to deliver. detach
// removes it from its groups and unsubscribes it.
func (r *RedisPubSub) Attach(ctx context.Context, prefix string, deliver func(canal.Message) bool) (string, func(), error) {
	if err := r.beginAttach(ctx, deliver); err != nil {
		return "", nil, err
	}
	name, err := r.localName(prefix, r.newAttachID())
	if err != nil {
		return "", nil, err
	}
	l := &redisListener{deliver: deliver}
	c := &pubsubChan{name: name, listener: l, groups: map[string]struct{}{}}
	if err := r.addChan(ctx, c); err != nil {
		return "", nil, err
	}
	detach := func() {
		if !l.detached.CompareAndSwap(false, true) {
			return
		}
		r.mu.Lock()
		var names []string
		if r.chans[name] == c {
			names = append(r.forgetLocked(name), name)
		}
		r.mu.Unlock()
		if len(names) == 0 || r.closed.Load() {
			return
		}
		r.pendingMu.Lock()
		r.pending = append(r.pending, names...)
		r.pendingMu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return name, detach, nil
}

// publish sends msg to the Pub/Sub channel name.
func (r *RedisPubSub) publish(ctx context.Context, op, name string, msg canal.Message) error {
	payload, err := r.encode(msg)
	if err != nil {
		return fmt.Errorf("layers: %s: %w: %w", op, canal.ErrInvalidMessage, err)
	}
	var c rueidis.Client
	var cmd func() rueidis.Completed
	if r.cluster {
		c = r.hosts[0].client
		cmd = func() rueidis.Completed {
			return c.B().Spublish().Channel(name).Message(rueidis.BinaryString(payload)).Build()
		}
	} else {
		c = r.host(name).client
		cmd = func() rueidis.Completed {
			return c.B().Publish().Channel(name).Message(rueidis.BinaryString(payload)).Build()
		}
	}
	err = redisconn.Retry(ctx, func() error { return c.Do(ctx, cmd()).Error() })
	if err != nil {
		return r.fail(op, err)
	}
	return nil
}

// Send publishes msg to channel. It never reports a full channel, and a message to
// a channel nobody is subscribed to is lost, as with channels_redis.pubsub.
func (r *RedisPubSub) Send(ctx context.Context, channel string, msg canal.Message) error {
	if err := r.beginSend(ctx, "send", channel, ValidChannelName(channel), msg.ValidateType()); err != nil {
		return err
	}
	if r.isAttachName(channel) {
		r.mu.RLock()
		c := r.chans[channel]
		r.mu.RUnlock()
		if c == nil {
			return nil // detached: drop
		}
	}
	return r.publish(ctx, "send to "+fmt.Sprintf("%q", channel), channel, msg)
}

// Receive returns the next message of channel, subscribing to it first if needed.
func (r *RedisPubSub) Receive(ctx context.Context, channel string) (canal.Message, error) {
	if err := r.beginReceive(ctx, channel); err != nil {
		return nil, err
	}
	if r.isAttachName(channel) {
		return nil, errReceiveAttach(channel)
	}
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return nil, canal.ErrLayerClosed
	}
	c := r.chans[channel]
	created := c == nil
	if created {
		c = &pubsubChan{name: channel, queue: r.newQueue(channel), groups: map[string]struct{}{}}
		r.chans[channel] = c
	}
	c.queue.mu.Lock()
	c.queue.refs++
	c.queue.mu.Unlock()
	c.lastUsed = r.localNow()
	r.mu.Unlock()
	if created {
		if err := r.subscribe(ctx, channel); err != nil {
			r.mu.Lock()
			if r.chans[channel] == c {
				delete(r.chans, channel)
			}
			r.mu.Unlock()
			return nil, err
		}
	}
	q := c.queue
	defer func() {
		q.mu.Lock()
		q.refs--
		q.mu.Unlock()
		r.mu.Lock()
		c.lastUsed = r.localNow()
		r.mu.Unlock()
	}()
	return q.pop(ctx, r.localNow, r.expiry, r.done)
}

// dispatch is a host's receive loop: it hands the messages its subscriber connection
// reads to their channels.
func (r *RedisPubSub) dispatch(h *pubsubHost) {
	defer r.wg.Done()
	for {
		select {
		case m := <-h.inbox:
			r.onMessage(m)
		case <-r.ctx.Done():
			return
		}
	}
}

// onMessage hands a message to the channel it was published to, or to the members of
// the group. It never blocks.
func (r *RedisPubSub) onMessage(m rueidis.PubSubMessage) {
	if r.closed.Load() {
		return
	}
	msg, err := r.decode([]byte(m.Message))
	if err == nil && msg.ValidateType() != nil {
		err = errors.New("no valid string \"type\"")
	}
	if err != nil {
		r.reportMalformed("channel", m.Channel, len(m.Message), err)
		return
	}
	now := r.localNow()
	r.mu.RLock()
	var targets []*pubsubChan
	if c := r.chans[m.Channel]; c != nil {
		targets = append(targets, c)
	} else {
		for name := range r.groups[m.Channel] {
			if c := r.chans[name]; c != nil {
				targets = append(targets, c)
			}
		}
	}
	r.mu.RUnlock()
	if len(targets) == 0 {
		r.undeliverable.Add(1) // unsubscribed meanwhile
	}
	for _, c := range targets {
		if c.listener != nil {
			r.hand(c.listener, msg)
		} else {
			r.enqueue(c.queue, msg, now)
		}
	}
}

func (r *RedisPubSub) groupChannel(group string) string { return r.prefix + "__group__" + group }

// GroupAdd adds a channel of this process to group, subscribing to the group's Pub/Sub
// channel if it is the first local member.
func (r *RedisPubSub) GroupAdd(ctx context.Context, group, channel string) error {
	if err := r.beginMember(ctx, "group add", group, channel); err != nil {
		return err
	}
	g := r.groupChannel(group)
	r.mu.Lock()
	c := r.chans[channel]
	if c == nil {
		r.mu.Unlock()
		if r.isAttachName(channel) {
			return nil // detached: the channel is gone
		}
		return fmt.Errorf("layers: group add: %w: %q is not a channel of this process (Pub/Sub groups are per process)",
			canal.ErrInvalidName, channel)
	}
	members := r.groups[g]
	if members == nil {
		members = make(map[string]struct{})
		r.groups[g] = members
	}
	members[channel] = struct{}{}
	c.groups[g] = struct{}{}
	r.mu.Unlock()
	return r.subscribe(ctx, g) // no I/O when already subscribed
}

// GroupDiscard removes channel from group, unsubscribing when no local member is left.
func (r *RedisPubSub) GroupDiscard(ctx context.Context, group, channel string) error {
	if err := r.beginMember(ctx, "group discard", group, channel); err != nil {
		return err
	}
	g := r.groupChannel(group)
	r.mu.Lock()
	members := r.groups[g]
	_, in := members[channel]
	if in {
		delete(members, channel)
		if c := r.chans[channel]; c != nil {
			delete(c.groups, g)
		}
	}
	empty := in && len(members) == 0
	if empty {
		delete(r.groups, g)
	}
	r.mu.Unlock()
	if empty {
		return r.unsubscribe(ctx, g)
	}
	return nil
}

// GroupSend publishes msg to the group's Pub/Sub channel.
func (r *RedisPubSub) GroupSend(ctx context.Context, group string, msg canal.Message) error {
	if err := r.beginSend(ctx, "group send", group, ValidGroupName(group), msg.ValidateType()); err != nil {
		return err
	}
	return r.publish(ctx, "group send to "+fmt.Sprintf("%q", group), r.groupChannel(group), msg)
}

// Flush forgets every group (unsubscribing from them) and drops queued messages.
// Channels stay subscribed and attached.
func (r *RedisPubSub) Flush(ctx context.Context) error {
	if err := r.begin(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	groups := slices.Collect(maps.Keys(r.groups))
	r.groups = make(map[string]map[string]struct{})
	for _, c := range r.chans {
		clear(c.groups)
		if q := c.queue; q != nil {
			q.mu.Lock()
			clear(q.items)
			q.items, q.head = q.items[:0], 0
			q.mu.Unlock()
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, g := range groups {
		if err := r.unsubscribe(ctx, g); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stats returns the delivery counters (GroupFull is always 0: Pub/Sub has no capacity).
func (r *RedisPubSub) Stats() RedisStats { return r.stats() }

// Close stops deliveries, wakes blocked receivers with canal.ErrLayerClosed, and
// closes the connections. It waits for its goroutines until ctx is done.
func (r *RedisPubSub) Close(ctx context.Context) error {
	r.mu.Lock()
	if !r.markClosed() {
		r.mu.Unlock()
		return nil
	}
	for _, c := range r.chans {
		if c.listener != nil {
			c.listener.detached.Store(true)
		}
	}
	r.chans = make(map[string]*pubsubChan)
	r.groups = make(map[string]map[string]struct{})
	r.mu.Unlock()

	// nodeHost starts goroutines under nmu after checking closed.
	err := r.shutdown(ctx, &r.nmu)
	r.nmu.Lock()
	shards := slices.Clone(r.shards)
	r.nmu.Unlock()
	for _, h := range shards {
		h.mu.Lock()
		if h.dc != nil {
			h.dc.Close()
			h.dc = nil
		}
		if r.cluster && h.client != nil {
			h.client.Close() // a master's own client (dialNode); the others are r.hosts'
		}
		h.mu.Unlock()
	}
	r.closeClients()
	return err
}
