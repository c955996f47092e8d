package layers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/ratelog"
	"github.com/canal-rt/canal/internal/redisconn"
)

// Redis is a channel layer in Redis that speaks channels_redis' wire format
// (channels_redis.core.RedisChannelLayer, 3.x–4.x), so Django and Go processes share
// channels and groups: Django's group_send reaches Go consumers, Go's reaches Django's.
//
// Layout, as in channels_redis: each channel's queue is a sorted set scored by send
// time; every process-local channel "<prefix>.<process id>!<local id>" of a process
// shares the process's queue key, and the target travels inside the message under
// "__asgi_channel__"; groups are sorted sets "<prefix>:group:<name>" of channel names
// scored by join time. With several hosts, names are sharded with channels_redis' CRC
// function.
//
// One receive loop goroutine per host pops the process's queue keys (BZPOPMIN) and
// hands each message to its channel: to an attached channel's deliver func, or to a
// bounded in-memory queue read by Receive. The loop never waits for a consumer: a
// deliver func returning false or a full queue drops the message, counted in Stats.
// The loop starts with the first NewChannel or Attach; a process that only sends
// holds no blocking connection.
//
// Behaviour beyond the canal.Layer contract:
//   - Send to a process-local channel of any process goes through Redis (Django's
//     channels included); ErrChannelFull means that process's queue key is full.
//   - Receive on a normal (worker) channel is Django's receive: it moves the popped
//     message to "<key>$inflight" until it is handed over, so other processes restore
//     it if this one dies in between. Receive on another process's channel, or on an
//     Attach channel, is an error.
//   - A detached Attach channel is dead: Send to it is dropped without touching Redis,
//     GroupAdd of it does nothing, and GroupSend removes its memberships.
//   - Members that cannot be read are logged (never their contents) and skipped; they
//     never stop the loop.
//   - Group members of Go processes that died without GroupDiscard are removed once
//     their liveness key is gone (RedisOptions.Liveness; package documentation,
//     "Stale group members"); Django's members are never touched.
//   - While Redis is down, calls return errors wrapping canal.ErrUnavailable, the loop
//     retries with backoff and resumes when Redis is back (calling OnReconnect);
//     Receive on a local channel keeps waiting.
//   - Flush deletes every key starting with the prefix on every host, as Django does,
//     and this process's buffered messages.
//   - After Close every method returns canal.ErrLayerClosed; Close is idempotent.
//
// In Cluster mode (RedisOptions.Cluster) the layer talks to a Redis Cluster through
// one rueidis cluster client; every key keeps its channels_redis name, so keys of one
// operation usually live in different slots, and the layer never runs a command or
// script over several of them:
//   - Send is one script on one queue key: atomic, as on a single server.
//   - GroupSend reads the group (one key), then runs the capacity script once per
//     queue key, pipelined to the nodes that own them: each key is atomic on its own
//     (prune, capacity check, ZADD, EXPIRE), the group send as a whole is not; a
//     failure part-way leaves the message with some members and returns an error.
//   - Receive on a normal channel backs the popped message up in "<key>$inflight"
//     (another slot) with a second command, and puts orphaned backups back with a
//     ZREM then a ZADD: a receiver that dies between the two loses that message
//     (at most once), where a single server does it atomically.
//   - The receive loop runs one BZPOPMIN per queue key (each its own goroutine and
//     blocking connection) instead of one over all keys.
//   - Flush runs KEYS/DEL on every master named by CLUSTER SLOTS, one master after
//     the other: not atomic across masters.
//   - Ordering per queue key is by score (the sender's clock) as on a single server;
//     there is no order across keys. Replication in a cluster is asynchronous: writes
//     a master acknowledged but had not replicated when it failed over are lost.
//
// In Sentinel mode (RedisOptions.Sentinel) everything goes to the current master, with
// the single-server guarantees; after a failover the client follows the master the
// sentinels name, and writes the old master had not replicated are lost.
type Redis struct {
	*redisBase // hosts, codec, local clock, counters, shutdown (redis_base.go)

	expirySec   int64 // Expiry in whole seconds, as Redis counts it
	groupExpiry int64 // seconds
	randLen     int
	receiveBuf  int64     // RedisOptions.ReceiveBuffer
	live        *liveness // nil when RedisOptions.Liveness < 0

	pid     string // this process's id in channel names: 32 hex digits
	pidPart string // "." + pid + "!"

	sendRR, recvRR atomic.Uint32 // round robin over hosts for normal channels

	// mu guards the local state the receive loops route to.
	mu           sync.RWMutex
	listeners    map[string]*redisListener
	buffers      map[string]*memQueue
	keySet       map[string]bool
	keys         atomic.Pointer[[]string] // watched queue keys, copy on write
	loopsStarted bool
	lastSweep    time.Duration

	pmu     sync.Mutex
	pollers map[string]*redisPoller

	// gmu guards members, the groups of this process's own channels (redis_group.go).
	gmu       sync.Mutex
	members   memberships
	rejoining atomic.Bool

	groupFull, staleMembers, invalidMembers atomic.Uint64
	invalidMembersLog                       ratelog.Limiter
}

const (
	// asgiChannelKey carries the target channel(s) of a message on a process queue.
	asgiChannelKey = "__asgi_channel__"
	// redisLoopBlock is the BZPOPMIN timeout of the receive loop: how often it looks for
	// queue keys added since (NewChannel with a new prefix) and sweeps idle buffers.
	redisLoopBlock = 2 * time.Second
	// redisReceiveBlock is the BZPOPMIN timeout of Receive on a normal channel
	// (channels_redis' brpop_timeout); with several hosts each is polled in turn for
	// redisReceiveBlockSharded.
	redisReceiveBlock        = 5 * time.Second
	redisReceiveBlockSharded = time.Second
	// redisDrainBatch is how many more messages the loop pops at once after a wake-up.
	redisDrainBatch = 64
	// redisPopAhead and RedisOptions.ReceiveBuffer bound what a receive loop has popped from
	// Redis and its router has not routed yet (redis_loop.go): the process queue is
	// drained promptly while routing is slow, and memory stays bounded when it stays
	// slow (then the queue fills in Redis and channels_redis' capacity applies).
	redisPopAhead = 1024
	// defaultReceiveBuffer and maxReceiveBuffer: RedisOptions.ReceiveBuffer.
	defaultReceiveBuffer = 16 << 20
	maxReceiveBuffer     = 1 << 30
)

var _ canal.Layer = (*Redis)(nil)

// Flush's scripts. Each runs atomically on its host; their effects are those of the
// commands channels_redis sends one by one.
var (
	// ARGV[1] a KEYS pattern: delete every matching key.
	redisFlushScript = rueidis.NewLuaScript(`
local keys = redis.call('KEYS', ARGV[1])
for i = 1, #keys, 5000 do
  redis.call('DEL', unpack(keys, i, math.min(i + 4999, #keys)))
end
return #keys`)

	// redisFlushScript for a cluster node: one DEL per key, since a command inside a
	// script may not touch keys of several slots.
	redisFlushEachScript = rueidis.NewLuaScript(`
local keys = redis.call('KEYS', ARGV[1])
for i = 1, #keys do
  redis.call('DEL', keys[i])
end
return #keys`)
)

// wholeSeconds rounds d up to whole seconds, at least 1.
func wholeSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// NewRedis connects to every host and returns the layer. Bad options are errors;
// a host that cannot be reached within ctx (or the dial timeout) gives an error
// wrapping canal.ErrUnavailable.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	switch {
	case opts.GroupExpiry < 0:
		return nil, fmt.Errorf("layers: redis: negative GroupExpiry %v", opts.GroupExpiry)
	case opts.Liveness > 0 && opts.Liveness < minLiveness:
		return nil, fmt.Errorf("layers: redis: Liveness %v is below %v", opts.Liveness, minLiveness)
	case opts.ReceiveBuffer < 0 || opts.ReceiveBuffer > maxReceiveBuffer:
		return nil, fmt.Errorf("layers: redis: ReceiveBuffer %d is not within 0 and %d", opts.ReceiveBuffer, maxReceiveBuffer)
	}
	base, err := newRedisBase(ctx, "redis", opts.common())
	if err != nil {
		return nil, err
	}
	r := &Redis{
		redisBase:   base,
		expirySec:   wholeSeconds(base.expiry),
		groupExpiry: wholeSeconds(cmp.Or(opts.GroupExpiry, DefaultGroupExpiry)),
		randLen:     max(cmp.Or(opts.RandomPrefixLength, DefaultRandomPrefixLength), 0),
		receiveBuf:  int64(cmp.Or(opts.ReceiveBuffer, defaultReceiveBuffer)),
		pid:         newProcessID(),
		listeners:   make(map[string]*redisListener),
		members:     make(memberships),
		buffers:     make(map[string]*memQueue),
		keySet:      make(map[string]bool),
		pollers:     make(map[string]*redisPoller),
	}
	// Local queues keep messages as long as Redis would: whole seconds.
	r.expiry = time.Duration(r.expirySec) * time.Second
	if opts.Liveness < 0 {
		// An untagged id: other processes never take this one's members for stale.
		for r.pid = randomHex(16); isGoProcessID(r.pid); r.pid = randomHex(16) {
		}
	}
	r.pidPart = "." + r.pid + "!"
	r.keys.Store(&[]string{})
	if opts.Liveness >= 0 {
		r.live = newLiveness(r, cmp.Or(opts.Liveness, DefaultLiveness))
		r.wg.Add(1)
		go r.live.run()
	}
	return r, nil
}

// Stats returns the receive loop's counters.
func (r *Redis) Stats() RedisStats {
	st := r.stats()
	st.GroupFull = r.groupFull.Load()
	st.InvalidMembers = r.invalidMembers.Load()
	st.StaleMembers = r.staleMembers.Load()
	if r.live != nil {
		st.LivenessLapses = r.live.lapses.Load()
	}
	return st
}

// ProcessID returns the 32 hex digits that name this layer's process-local channels
// ("specific.<id>!…").
func (r *Redis) ProcessID() string { return r.pid }

// nonLocal returns the part of a channel name up to and including '!', or the whole
// name of a normal channel.
func nonLocal(channel string) string {
	if i := strings.IndexByte(channel, '!'); i >= 0 {
		return channel[:i+1]
	}
	return channel
}

// ownChannel reports whether channel is a process-local channel of this layer.
func (r *Redis) ownChannel(channel string) bool {
	i := strings.IndexByte(channel, '!')
	return i >= 0 && strings.HasSuffix(channel[:i+1], r.pidPart) && i+1 > len(r.pidPart)
}

// isAttachName reports whether channel was made by this layer's Attach.
func (r *Redis) isAttachName(channel string) bool {
	return r.ownChannel(channel) && isAttachLocal(r.seed, channel[strings.IndexByte(channel, '!')+1:])
}

// detachedOwn reports whether channel is a detached Attach channel of this layer.
func (r *Redis) detachedOwn(channel string) bool {
	if !r.isAttachName(channel) {
		return false
	}
	r.mu.RLock()
	l := r.listeners[channel]
	r.mu.RUnlock()
	return l == nil || l.detached.Load()
}

// localName returns "<prefix>.<pid>!<local>" and its queue key.
func (r *Redis) localName(prefix, local string) (name, key string, err error) {
	if prefix == "" {
		prefix = "specific"
	}
	nl := prefix + r.pidPart
	name = nl + local
	if err := ValidChannelName(name); err != nil {
		return "", "", fmt.Errorf("layers: prefix %q: %w", prefix, err)
	}
	return name, r.prefix + nl, nil
}

// watch makes the receive loops pop key, starting them on first use.
func (r *Redis) watch(key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return canal.ErrLayerClosed
	}
	if r.keySet[key] {
		return nil
	}
	r.keySet[key] = true
	keys := append(slices.Clone(*r.keys.Load()), key)
	r.keys.Store(&keys)
	switch {
	case r.cluster:
		// Keys of several slots cannot share a BZPOPMIN: one loop per key.
		r.wg.Add(1)
		go r.loop(r.hosts[0], key)
	case !r.loopsStarted:
		for _, h := range r.hosts {
			r.wg.Add(1)
			go r.loop(h, "")
		}
	}
	if !r.loopsStarted {
		r.loopsStarted = true
		if r.live != nil {
			r.live.activate() // channels exist from now on: keep the liveness key
		}
	}
	return nil
}

// NewChannel returns "<prefix>.<process id>!<32 hex>" (prefix "specific" when empty),
// read with Receive. Its messages are buffered in memory from the moment they arrive,
// up to its capacity; buffers left unread are freed after Expiry.
func (r *Redis) NewChannel(ctx context.Context, prefix string) (string, error) {
	if err := r.begin(ctx); err != nil {
		return "", err
	}
	name, key, err := r.localName(prefix, r.newLocalID())
	if err != nil {
		return "", err
	}
	if err := r.watch(key); err != nil {
		return "", err
	}
	return name, nil
}

// Attach returns "<prefix>.<process id>!<32 hex>" (prefix "specific" when empty),
// whose messages the receive loop hands to deliver. detach is idempotent and does not
// wait for a deliver call under way.
func (r *Redis) Attach(ctx context.Context, prefix string, deliver func(canal.Message) bool) (string, func(), error) {
	if err := r.beginAttach(ctx, deliver); err != nil {
		return "", nil, err
	}
	name, key, err := r.localName(prefix, r.newAttachID())
	if err != nil {
		return "", nil, err
	}
	if err := r.watch(key); err != nil {
		return "", nil, err
	}
	l := &redisListener{deliver: deliver}
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return "", nil, canal.ErrLayerClosed
	}
	r.listeners[name] = l
	r.mu.Unlock()
	detach := func() {
		if !l.detached.CompareAndSwap(false, true) {
			return
		}
		r.mu.Lock()
		if r.listeners[name] == l {
			delete(r.listeners, name)
		}
		r.mu.Unlock()
	}
	return name, detach, nil
}

// Flush deletes every key with the layer's prefix on every host (Django's flush:
// other processes' queues and all groups included) and this process's buffered
// messages. Attached channels stay attached.
func (r *Redis) Flush(ctx context.Context) error {
	if err := r.begin(ctx); err != nil {
		return err
	}
	var errs []error
	if r.live != nil {
		r.live.flushing()
	}
	if r.cluster {
		if err := r.flushCluster(ctx); err != nil {
			errs = append(errs, r.fail("flush", err))
		}
	} else {
		for _, h := range r.hosts {
			err := redisconn.Retry(ctx, func() error {
				return redisFlushScript.Exec(ctx, h.client, nil, []string{r.prefix + "*"}).Error()
			})
			if err != nil {
				errs = append(errs, r.fail("flush", err))
			}
		}
	}
	r.mu.Lock()
	for name, q := range r.buffers {
		q.mu.Lock()
		clear(q.items)
		q.items, q.head = q.items[:0], 0
		if q.refs == 0 {
			delete(r.buffers, name)
		}
		q.mu.Unlock()
	}
	r.mu.Unlock()
	return errors.Join(errs...)
}

// flushCluster deletes the prefix's keys on every master CLUSTER SLOTS names.
func (r *Redis) flushCluster(ctx context.Context) error {
	c := r.hosts[0].client
	var slots *clusterSlots
	err := redisconn.Retry(ctx, func() (err error) {
		slots, err = loadClusterSlots(ctx, c)
		return err
	})
	if err != nil {
		return err
	}
	nodes := c.Nodes()
	var errs []error
	for _, addr := range slots.masters {
		n := nodes[addr]
		if n == nil {
			errs = append(errs, fmt.Errorf("master %s: no connection", addr))
			continue
		}
		err := redisconn.Retry(ctx, func() error {
			return redisFlushEachScript.Exec(ctx, n, nil, []string{r.prefix + "*"}).Error()
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("master %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// Close stops the receive loops and pollers, wakes blocked receivers with
// canal.ErrLayerClosed, stops deliveries and closes the Redis clients. It waits for
// its goroutines until ctx is done.
func (r *Redis) Close(ctx context.Context) error {
	r.mu.Lock()
	if !r.markClosed() {
		r.mu.Unlock()
		return nil
	}
	for _, l := range r.listeners {
		l.detached.Store(true)
	}
	r.listeners = make(map[string]*redisListener)
	r.buffers = make(map[string]*memQueue)
	r.mu.Unlock()

	// receiveNormal starts pollers under pmu after checking closed.
	err := r.shutdown(ctx, &r.pmu) // interrupts BZPOPMIN
	if r.live != nil {
		r.live.remove(ctx) // members left behind are now stale for the others
	}
	r.closeClients()
	return err
}
