package layers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/redisconn"
)

// The base of both Redis layers. Redis (channels_redis' core layer) and RedisPubSub (its
// Pub/Sub layer) each embed a redisBase, which holds what they share: the options
// common to both, the clients of the Redis servers, the message codec, the local
// clock and Attach-name seed, the counters behind Stats, and the shutdown plumbing of
// their background goroutines. A new backend feature starts from here.

// redisMaxBackoff bounds the wait between attempts to reach Redis while it is down.
const redisMaxBackoff = 2 * time.Second

// RedisStats counts what happened to messages the receive loop took from Redis.
type RedisStats struct {
	// Delivered: handed to an attached channel's deliver func or queued for Receive.
	Delivered uint64
	// Dropped: deliver returned false (its queue was full), or the local queue of a
	// NewChannel channel was at capacity.
	Dropped uint64
	// Undeliverable: addressed to a detached channel of this process.
	Undeliverable uint64
	// Malformed: skipped because it could not be read (no random prefix, bad
	// encoding or encryption, no string "type", no __asgi_channel__).
	Malformed uint64
	// GroupFull: queue keys GroupSend skipped because they were at capacity.
	GroupFull uint64
	// InvalidMembers: group members GroupSend skipped because their name is not valid
	// UTF-8, so no channel can have it: something other than a channel layer wrote it
	// to "<prefix>:group:<name>". Counted at every GroupSend that meets them (they are
	// left in place, to expire with the group); without the skip one such member
	// would make every GroupSend to its group fail.
	InvalidMembers uint64
	// StaleMembers: group members removed because the Go process that owned them
	// had stopped refreshing its liveness key (RedisOptions.Liveness).
	StaleMembers uint64
	// LivenessLapses: times this process found its own liveness key gone when it
	// refreshed it (Redis restarted or flushed, or this process was cut off for
	// longer than Liveness): other processes may have removed its group members.
	LivenessLapses uint64
	// Reconnects: recoveries from a Redis failure, by a receive loop (Redis: queued
	// messages wait in Redis meanwhile) or a subscriber connection (RedisPubSub:
	// messages published meanwhile were lost); each also calls OnReconnect.
	Reconnects uint64
}

// redisBase is the part of a Redis layer that does not depend on its wire layout.
type redisBase struct {
	name     string // "redis" or "redis pubsub": starts errors and log lines
	opPrefix string // starts the operation in fail's errors ("pubsub: ")

	hosts   []*redisHost // one per Hosts URL, in order; Cluster and Sentinel modes: one
	cluster bool         // Cluster mode: hosts[0] is a cluster client

	prefix      string
	capacity    int
	patterns    []Capacity
	expiry      time.Duration // how long a message waits in a local queue
	json        bool          // SerializerFormat "json"
	crypter     *fernet       // nil without SymmetricEncryptionKeys
	log         *slog.Logger
	onReconnect func(host string, down time.Duration)
	seed        maphash.Seed // of Attach names' tags
	start       time.Time    // clock origin of the local queues

	ctx  context.Context // of the background goroutines, cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup

	closed atomic.Bool
	done   chan struct{} // closed by Close: wakes blocked receivers

	history    historyRules  // groups that keep history (redis_history.go)
	publishing *publishLocks // per-group order of this process's publishers

	delivered, dropped, undeliverable, reconnects atomic.Uint64
	malformed                                     malformedCounter
}

// redisHost is one Redis client: a server of Hosts, a cluster or a Sentinel master.
type redisHost struct {
	name   string // the URL without its password, for logs
	client rueidis.Client
}

// redisListener is an Attach channel's deliver func.
type redisListener struct {
	deliver  func(canal.Message) bool
	detached atomic.Bool
}

// newRedisBase validates and defaults the shared options, then connects (see dial).
// name ("redis", "redis pubsub") starts its errors.
func newRedisBase(ctx context.Context, name string, c redisCommon) (*redisBase, error) {
	if err := c.validate(name); err != nil {
		return nil, err
	}
	b := &redisBase{
		name:        name,
		prefix:      cmp.Or(c.prefix, DefaultRedisPrefix),
		capacity:    cmp.Or(c.capacity, DefaultCapacity),
		patterns:    slices.Clone(c.channelCapacity),
		expiry:      cmp.Or(c.expiry, DefaultExpiry),
		log:         cmp.Or(c.logger, slog.Default()),
		onReconnect: c.onReconnect,
		seed:        maphash.MakeSeed(),
		start:       time.Now(),
		done:        make(chan struct{}),
	}
	var err error
	if b.history, err = newHistoryRules(name, c.history); err != nil { // redis_history.go
		return nil, err
	}
	b.publishing = newPublishLocks()
	if b.json, b.crypter, err = newCodec(c.format, c.keys); err != nil {
		return nil, fmt.Errorf("layers: %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.dial(ctx, c); err != nil {
		return nil, err
	}
	b.ctx, b.stop = context.WithCancel(context.Background())
	return b, nil
}

// dial connects to Redis the way c says: each of Hosts (default DefaultRedisHost),
// a Cluster, or the master a Sentinel names. Every server answers a PING first.
func (b *redisBase) dial(ctx context.Context, c redisCommon) error {
	switch {
	case len(c.cluster) > 0:
		h, err := dialCluster(ctx, c.cluster, c.clientOptions)
		if err != nil {
			return fmt.Errorf("layers: %s: %w", b.name, err)
		}
		b.hosts, b.cluster = []*redisHost{h}, true
	case c.sentinel != nil:
		h, err := dialSentinel(ctx, c.sentinel, c.clientOptions)
		if err != nil {
			return fmt.Errorf("layers: %s: %w", b.name, err)
		}
		b.hosts = []*redisHost{h}
	default:
		urls := c.hosts
		if len(urls) == 0 {
			urls = []string{DefaultRedisHost}
		}
		for i, u := range urls {
			client, name, err := redisconn.DialURL(ctx, u, c.clientOptions)
			if err != nil {
				b.closeClients()
				return fmt.Errorf("layers: %s: host %d: %w", b.name, i, err)
			}
			b.hosts = append(b.hosts, &redisHost{name: name, client: client})
		}
	}
	return nil
}

// closeClients closes the clients dial made.
func (b *redisBase) closeClients() {
	for _, h := range b.hosts {
		h.client.Close()
	}
}

// abort undoes newRedisBase, for a constructor that fails after it.
func (b *redisBase) abort() {
	b.stop()
	b.closeClients()
}

// begin is every method's first check.
func (b *redisBase) begin(ctx context.Context) error {
	if b.closed.Load() {
		return canal.ErrLayerClosed
	}
	return ctx.Err()
}

// fail wraps a Redis failure: canal.ErrLayerClosed once closed, the server's error
// reply as it is, anything else (network, timeout, deadline) with canal.ErrUnavailable.
func (b *redisBase) fail(op string, err error) error {
	return redisFailure(b.closed.Load(), b.opPrefix+op, err)
}

func redisFailure(closed bool, op string, err error) error {
	if closed || errors.Is(err, rueidis.ErrClosing) {
		return fmt.Errorf("layers: redis: %s: %w", op, canal.ErrLayerClosed)
	}
	if rerr, ok := rueidis.IsRedisErr(err); ok {
		switch strings.SplitN(rerr.Error(), " ", 2)[0] {
		case "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY":
		default:
			return fmt.Errorf("layers: redis: %s: %w", op, err)
		}
	}
	return fmt.Errorf("layers: redis: %s: %w: %w", op, canal.ErrUnavailable, err)
}

// localNow is the clock of the local queues.
func (b *redisBase) localNow() time.Duration { return time.Since(b.start) }

// newLocalID returns the 32 hex digits of a NewChannel name's local part, never one
// that reads as an Attach name's (2^-64: never, but names stay apart).
func (b *redisBase) newLocalID() string {
	local := randomHex(16)
	for local[16:] == b.attachTag(local[:16]) {
		local = randomHex(16)
	}
	return local
}

// newAttachID returns an Attach name's local part: 16 random hex digits and their tag.
func (b *redisBase) newAttachID() string {
	random := randomHex(8)
	return random + b.attachTag(random)
}

func (b *redisBase) attachTag(random string) string { return attachTag(b.seed, random) }

// newQueue returns the local queue of a channel read with Receive.
func (b *redisBase) newQueue(channel string) *memQueue {
	return &memQueue{capacity: capacityFor(channel, b.patterns, b.capacity)}
}

// hand gives msg to an attached channel's deliver func, never waiting, and counts what
// became of it.
func (b *redisBase) hand(l *redisListener, msg canal.Message) {
	switch {
	case l.detached.Load():
		b.undeliverable.Add(1)
	case callDeliver(b.log, l, msg):
		b.delivered.Add(1)
	default:
		b.dropped.Add(1)
	}
}

// enqueue puts msg on a local queue read by Receive, or drops it when the queue is
// full, and counts which.
func (b *redisBase) enqueue(q *memQueue, msg canal.Message, now time.Duration) {
	if q.push(msg, now, b.expiry) {
		b.delivered.Add(1)
	} else {
		b.dropped.Add(1)
	}
}

// reportMalformed counts a skipped message and logs it, at most once a second; where
// ("key", "channel") names what name is.
func (b *redisBase) reportMalformed(where, name string, size int, err error) {
	b.malformed.report(b.log, "layers: "+b.name+": skipped a message that cannot be read", where, name, size, err)
}

// stats returns the counters both layers keep.
func (b *redisBase) stats() RedisStats {
	return RedisStats{
		Delivered:     b.delivered.Load(),
		Dropped:       b.dropped.Load(),
		Undeliverable: b.undeliverable.Load(),
		Malformed:     b.malformed.count(),
		Reconnects:    b.reconnects.Load(),
	}
}

// backoff waits before the next attempt to reach Redis: from 50 ms, doubling up to
// redisMaxBackoff, with jitter. It returns false when the layer closes meanwhile.
func (b *redisBase) backoff(timer *time.Timer, d *time.Duration) bool {
	*d = min(max(2**d, 50*time.Millisecond), redisMaxBackoff)
	timer.Reset(*d/2 + rand.N(*d/2+1))
	select {
	case <-timer.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}

// reconnected counts a recovery from a Redis failure, logs msg with attrs and the
// length of the outage, and calls the OnReconnect hook.
func (b *redisBase) reconnected(host string, down time.Duration, msg string, attrs ...any) {
	b.reconnects.Add(1)
	b.log.Info(msg, append(attrs, "down", down)...)
	callOnReconnect(b.log, b.onReconnect, host, down)
}

// markClosed flips the layer to closed, once: it reports whether this call did, and
// wakes blocked receivers. The layer holds the lock its goroutines check closed under.
func (b *redisBase) markClosed() bool {
	if !b.closed.CompareAndSwap(false, true) {
		return false
	}
	close(b.done)
	return true
}

// shutdown stops the background goroutines and waits for them until ctx is done.
// gate is the lock under which the layer starts goroutines after checking closed:
// once shutdown has held it, none will start, so wg.Wait cannot race a wg.Add.
func (b *redisBase) shutdown(ctx context.Context, gate sync.Locker) error {
	gate.Lock()
	gate.Unlock() // a barrier, not a critical section
	b.stop()
	finished := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// redisNow returns the score of a message sent now (Python's time.time()) and the
// whole seconds.
func redisNow() (score float64, sec int64) {
	t := time.Now()
	return float64(t.UnixMicro()) / 1e6, t.Unix()
}

func formatScore(score float64) string { return strconv.FormatFloat(score, 'f', -1, 64) }

// attachTag returns the 16 hex digits that follow random in an Attach channel's local
// part: names made by Attach are recognised without remembering them all.
func attachTag(seed maphash.Seed, random string) string {
	return tagHex(maphash.String(seed, random))
}

// isAttachLocal reports whether local is 16 hex digits followed by their attachTag.
func isAttachLocal(seed maphash.Seed, local string) bool {
	return isTagged(local, func(random string) uint64 { return maphash.String(seed, random) })
}

// callOnReconnect runs the OnReconnect hook, if any; a panic in it is logged.
func callOnReconnect(log *slog.Logger, hook func(string, time.Duration), host string, down time.Duration) {
	if hook == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			log.Error("layers: redis: the OnReconnect hook panicked", "panic", fmt.Sprint(v))
		}
	}()
	hook(host, down)
}

func callDeliver(log *slog.Logger, l *redisListener, msg canal.Message) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			log.Error("layers: redis: a deliver func panicked; message dropped", "panic", fmt.Sprint(v))
			ok = false
		}
	}()
	return l.deliver(msg)
}

// The canal.Layer methods' first checks, in the order and words of every layer: the
// names, then the message, then begin. op names the method in errors ("send",
// "group add", …).

// beginSend is Send's and GroupSend's: nameErr is the check of the target's name,
// msgErr the message's.
func (b *redisBase) beginSend(ctx context.Context, op, target string, nameErr, msgErr error) error {
	switch {
	case nameErr != nil:
		return fmt.Errorf("layers: %s: %w", op, nameErr)
	case msgErr != nil:
		return fmt.Errorf("layers: %s to %q: %w", op, target, msgErr)
	}
	return b.begin(ctx)
}

// beginMember is GroupAdd's and GroupDiscard's.
func (b *redisBase) beginMember(ctx context.Context, op, group, channel string) error {
	err := ValidGroupName(group)
	if err == nil {
		err = ValidChannelName(channel)
	}
	if err != nil {
		return fmt.Errorf("layers: %s: %w", op, err)
	}
	return b.begin(ctx)
}

// beginReceive is Receive's.
func (b *redisBase) beginReceive(ctx context.Context, channel string) error {
	if err := ValidChannelName(channel); err != nil {
		return fmt.Errorf("layers: receive: %w", err)
	}
	return b.begin(ctx)
}

// beginAttach is Attach's.
func (b *redisBase) beginAttach(ctx context.Context, deliver func(canal.Message) bool) error {
	if err := b.begin(ctx); err != nil {
		return err
	}
	if deliver == nil {
		return errors.New("layers: attach: nil deliver func")
	}
	return nil
}

// errReceiveAttach is Receive's error for an Attach channel of this layer.
func errReceiveAttach(channel string) error {
	return fmt.Errorf("layers: receive: %w: %q is an Attach channel; its messages go to its deliver func",
		canal.ErrInvalidName, channel)
}
