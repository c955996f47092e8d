package layers

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/ratelog"
)

// RedisOptions configures NewRedis. The zero value gives channels_redis' defaults;
// every field must match the Django side's CHANNEL_LAYERS settings for the two to
// talk.
type RedisOptions struct {
	// Hosts are the Redis servers as URLs (redis://[:password@]host:port/db,
	// rediss://…, unix://…), in the same order as Django's "hosts": the order decides
	// sharding. Default ["redis://localhost:6379"]. Hosts, Cluster and Sentinel are
	// mutually exclusive.
	Hosts []string
	// Cluster, when set, are seed addresses ("host:port") of a Redis Cluster: the
	// layer uses one rueidis cluster client and Redis Cluster's own sharding instead
	// of channels_redis' client-side sharding. Django cannot use a cluster, so this
	// mode is for Go-only deployments; key names are unchanged (no {hash tags}). See
	// the package documentation ("Cluster and Sentinel") for what stays atomic.
	// Credentials and TLS go through ClientOptions.
	Cluster []string
	// Sentinel, when set, finds the master through Redis Sentinel and follows it
	// through failovers. Django's channels_redis can use the same master through its
	// own Sentinel support, so this mode stays wire-compatible.
	Sentinel *SentinelOptions
	// OnReconnect, when set, is called after a receive loop recovers from a Redis
	// failure, with the loop's host (its redacted URL, "cluster <seeds>" or
	// "sentinel <master set>") and how long it had been failing. Messages that were
	// already stored in Redis are still delivered afterwards unless Redis lost them (a
	// restart without persistence, a failover that lost unreplicated writes): then
	// queued messages are gone, and the hook is how the application learns that it
	// should resync (reload state). Group memberships of this process's channels are
	// restored by the layer itself on recovery, with a fresh join time. It runs
	// on the loop's goroutine: it should return quickly, and may call the layer. In
	// Cluster mode there is one loop per queue key, so one outage may call it several
	// times. Stats().Reconnects counts the same events.
	OnReconnect func(host string, down time.Duration)
	// Liveness is the lifetime of this process's liveness key
	// "<prefix>:canal:alive:<process id>" (default 30 s; negative turns the mechanism
	// off). The layer sets it once it has made a channel and refreshes it every
	// Liveness/3; Close deletes it. Other Go processes remove group members whose
	// owner's key is gone, so a crashed process's members do not linger for
	// GroupExpiry. See the package documentation ("Stale group members").
	Liveness time.Duration
	// Prefix is glued to every key with no separator (default "asgi").
	Prefix string
	// Expiry is a message's lifetime in Redis (default 60 s); GroupExpiry a group
	// membership's (default 24 h). Redis counts in whole seconds: both are rounded up.
	Expiry, GroupExpiry time.Duration
	// Capacity is the number of messages one Redis queue key holds before Send returns
	// canal.ErrChannelFull (default 100). All the process-local channels of one process
	// share one key, so they share this capacity, as in channels_redis.
	Capacity int
	// ChannelCapacity overrides Capacity per channel-name glob; the first match wins.
	ChannelCapacity []Capacity
	// SymmetricEncryptionKeys turns on Fernet encryption of message bodies: the first
	// key encrypts, all of them decrypt (rotation).
	SymmetricEncryptionKeys []string
	// SerializerFormat is "msgpack" (default) or "json" (channels_redis 4.2.1+).
	SerializerFormat string
	// RandomPrefixLength is the number of random bytes before each stored message
	// (default 12). A negative value means none, which is channels_redis'
	// random_prefix_length=0.
	RandomPrefixLength int
	// ClientOptions, when set, may change each host's rueidis options (timeouts,
	// TLS, pool sizes) after the layer's defaults are applied.
	ClientOptions func(*rueidis.ClientOption)
	// Logger receives the layer's warnings (default slog.Default()). Messages'
	// contents are never logged.
	Logger *slog.Logger
}

// Defaults shared with channels_redis.
const (
	DefaultRedisHost          = "redis://localhost:6379"
	DefaultRedisPrefix        = "asgi"
	DefaultRandomPrefixLength = 12
)

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
	// redisMaxBackoff bounds the receive loop's wait between attempts while Redis is down.
	redisMaxBackoff = 2 * time.Second
	// redisMaxStaleRetries bounds the immediate retries of a command that failed on a
	// connection that died while idle (Redis restarted): each such pooled connection
	// fails once before it is replaced.
	redisMaxStaleRetries = 4
)

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
	hosts       []*redisHost
	cluster     bool // Cluster mode: one host, a cluster client
	prefix      string
	expiry      int64 // seconds
	groupExpiry int64 // seconds
	capacity    int
	patterns    []Capacity
	crypter     *fernet
	json        bool
	randLen     int
	log         *slog.Logger
	onReconnect func(host string, down time.Duration)
	live        *liveness // nil when RedisOptions.Liveness < 0

	pid     string // this process's id in channel names: 32 hex digits
	pidPart string // "." + pid + "!"
	seed    maphash.Seed

	start time.Time // clock origin of the local buffers
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	closed atomic.Bool
	done   chan struct{}

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

	// gmu guards members, the groups of this process's own channels (redis_rejoin.go).
	gmu       sync.Mutex
	members   memberships
	rejoining atomic.Bool

	delivered, dropped, undeliverable, groupFull, reconnects atomic.Uint64
	malformed                                                malformedCounter
	staleMembers                                             atomic.Uint64
	invalidMembers                                           atomic.Uint64
	invalidMembersLog                                        ratelog.Limiter
}

var _ canal.Layer = (*Redis)(nil)

type redisHost struct {
	name   string // the URL without its password, for logs
	client rueidis.Client
}

type redisListener struct {
	deliver  func(canal.Message) bool
	detached atomic.Bool
}

// redisPoller pops one normal channel's key for the receivers waiting on it.
type redisPoller struct {
	key     string
	waiters []chan redisRecv // FIFO; each buffered 1 and sent to once
}

type redisRecv struct {
	msg canal.Message
	err error
}

// Scripts. Each runs atomically on its host; their effects are those of the
// commands channels_redis sends one by one.
var (
	// KEYS[1] queue; ARGV member, score, expiry, cutoff, capacity. 1 sent, 0 full.
	redisSendScript = rueidis.NewLuaScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[4])
if redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') >= tonumber(ARGV[5]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1`)

	// KEYS queue keys; ARGV members (one per key), capacities (one per key), score,
	// expiry, cutoff. Returns how many keys were full. In Cluster mode it runs once
	// per key (groupSendEach).
	redisGroupSendScript = rueidis.NewLuaScript(redisGroupSendSrc)

	// KEYS[1] queue, KEYS[2] its $inflight backup, ARGV[1] a score: put the backups
	// scored below it back in the queue (channels_redis puts all of them back).
	redisRestoreScript = rueidis.NewLuaScript(`
local backed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'WITHSCORES')
for i = 1, #backed, 2 do
  redis.call('ZADD', KEYS[1], backed[i + 1], backed[i])
  redis.call('ZREM', KEYS[2], backed[i])
end`)

	// KEYS[1] queue, KEYS[2] its $inflight backup; ARGV score, member: put one popped
	// message back where it was.
	redisPutBackScript = rueidis.NewLuaScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])`)

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

const redisGroupSendSrc = `
local n = #KEYS
local score, expiry, cutoff = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
local full = 0
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff)
  if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
    redis.call('ZADD', KEYS[i], score, ARGV[i])
    redis.call('EXPIRE', KEYS[i], expiry)
  else
    full = full + 1
  end
end
return full`

// wholeSeconds rounds d up to whole seconds, at least 1.
func wholeSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// NewRedis connects to every host and returns the layer. Bad options are errors;
// a host that cannot be reached within ctx (or the dial timeout) gives an error
// wrapping canal.ErrUnavailable.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	switch {
	case opts.Expiry < 0:
		return nil, fmt.Errorf("layers: redis: negative Expiry %v", opts.Expiry)
	case opts.GroupExpiry < 0:
		return nil, fmt.Errorf("layers: redis: negative GroupExpiry %v", opts.GroupExpiry)
	case opts.Capacity < 0:
		return nil, fmt.Errorf("layers: redis: negative Capacity %d", opts.Capacity)
	case opts.Liveness > 0 && opts.Liveness < minLiveness:
		return nil, fmt.Errorf("layers: redis: Liveness %v is below %v", opts.Liveness, minLiveness)
	}
	if err := validateCapacities(opts.ChannelCapacity); err != nil {
		return nil, err
	}
	if err := checkModes("redis", opts.Hosts, opts.Cluster, opts.Sentinel); err != nil {
		return nil, err
	}
	r := &Redis{
		prefix:      cmp.Or(opts.Prefix, DefaultRedisPrefix),
		expiry:      wholeSeconds(cmp.Or(opts.Expiry, DefaultExpiry)),
		groupExpiry: wholeSeconds(cmp.Or(opts.GroupExpiry, DefaultGroupExpiry)),
		capacity:    cmp.Or(opts.Capacity, DefaultCapacity),
		patterns:    slices.Clone(opts.ChannelCapacity),
		randLen:     cmp.Or(opts.RandomPrefixLength, DefaultRandomPrefixLength),
		log:         opts.Logger,
		onReconnect: opts.OnReconnect,
		pid:         newProcessID(),
		seed:        maphash.MakeSeed(),
		start:       time.Now(),
		done:        make(chan struct{}),
		listeners:   make(map[string]*redisListener),
		members:     make(memberships),
		buffers:     make(map[string]*memQueue),
		keySet:      make(map[string]bool),
		pollers:     make(map[string]*redisPoller),
	}
	if opts.Liveness < 0 {
		// An untagged id: other processes never take this one's members for stale.
		for r.pid = randomHex(16); isGoProcessID(r.pid); r.pid = randomHex(16) {
		}
	}
	r.pidPart = "." + r.pid + "!"
	r.randLen = max(r.randLen, 0)
	if r.log == nil {
		r.log = slog.Default()
	}
	r.keys.Store(&[]string{})
	var err error
	if r.json, r.crypter, err = newCodec(opts.SerializerFormat, opts.SymmetricEncryptionKeys); err != nil {
		return nil, fmt.Errorf("layers: redis: %w", err)
	}
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = []string{DefaultRedisHost}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case len(opts.Cluster) > 0:
		h, err := dialCluster(ctx, opts.Cluster, opts.ClientOptions)
		if err != nil {
			return nil, fmt.Errorf("layers: redis: %w", err)
		}
		r.hosts, r.cluster = []*redisHost{h}, true
	case opts.Sentinel != nil:
		h, err := dialSentinel(ctx, opts.Sentinel, opts.ClientOptions)
		if err != nil {
			return nil, fmt.Errorf("layers: redis: %w", err)
		}
		r.hosts = []*redisHost{h}
	default:
		for i, u := range hosts {
			h, err := dialRedisHost(ctx, u, opts.ClientOptions)
			if err != nil {
				for _, h := range r.hosts {
					h.client.Close()
				}
				return nil, fmt.Errorf("layers: redis: host %d: %w", i, err)
			}
			r.hosts = append(r.hosts, h)
		}
	}
	r.ctx, r.stop = context.WithCancel(context.Background())
	if opts.Liveness >= 0 {
		r.live = newLiveness(r, cmp.Or(opts.Liveness, DefaultLiveness))
		r.wg.Add(1)
		go r.live.run()
	}
	return r, nil
}

// redactURL returns u without its password, for logs and errors.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

func dialRedisHost(ctx context.Context, u string, hook func(*rueidis.ClientOption)) (*redisHost, error) {
	name := redactURL(u)
	opt, err := rueidis.ParseURL(u)
	if err != nil {
		// url.Parse's errors quote the URL, password included.
		return nil, fmt.Errorf("bad URL %s: %s", name, strings.ReplaceAll(err.Error(), u, name))
	}
	// channels_redis has no client-side caching and no Redis Cluster support.
	opt.DisableCache = true
	opt.ForceSingleClient = true
	return dialHost(ctx, name, opt, hook, nil)
}

// dialHost makes the client for opt (after the user's hook), runs check on it, if any,
// and pings the server. Connection failures wrap canal.ErrUnavailable; name, free of
// passwords, identifies the host in errors and logs.
func dialHost(ctx context.Context, name string, opt rueidis.ClientOption, hook func(*rueidis.ClientOption), check func(rueidis.Client) error) (*redisHost, error) {
	if hook != nil {
		hook(&opt)
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w: %w", name, canal.ErrUnavailable, err)
	}
	if check != nil {
		if err := check(c); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		c.Close()
		return nil, fmt.Errorf("ping %s: %w: %w", name, canal.ErrUnavailable, err)
	}
	return &redisHost{name: name, client: c}, nil
}

// Stats returns the receive loop's counters.
func (r *Redis) Stats() RedisStats {
	st := RedisStats{
		Delivered:      r.delivered.Load(),
		Dropped:        r.dropped.Load(),
		Undeliverable:  r.undeliverable.Load(),
		Malformed:      r.malformed.count(),
		GroupFull:      r.groupFull.Load(),
		InvalidMembers: r.invalidMembers.Load(),
		StaleMembers:   r.staleMembers.Load(),
		Reconnects:     r.reconnects.Load(),
	}
	if r.live != nil {
		st.LivenessLapses = r.live.lapses.Load()
	}
	return st
}

// ProcessID returns the 32 hex digits that name this layer's process-local channels
// ("specific.<id>!…").
func (r *Redis) ProcessID() string { return r.pid }

func (r *Redis) begin(ctx context.Context) error {
	if r.closed.Load() {
		return canal.ErrLayerClosed
	}
	return ctx.Err()
}

// fail wraps a Redis failure: canal.ErrLayerClosed once closed, the server's error
// reply as it is, anything else (network, timeout, deadline) with canal.ErrUnavailable.
func (r *Redis) fail(op string, err error) error { return redisFailure(r.closed.Load(), op, err) }

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

// redisStaleConn reports whether err shows that a pooled connection had died before use.
func redisStaleConn(err error) bool {
	if err == nil || rueidis.IsRedisNil(err) {
		return false
	}
	if _, ok := rueidis.IsRedisErr(err); ok {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// redisRetry runs f again while it fails on connections that died while idle.
func redisRetry(ctx context.Context, f func() error) error {
	err := f()
	for i := 0; redisStaleConn(err) && i < redisMaxStaleRetries && ctx.Err() == nil; i++ {
		err = f()
	}
	return err
}

// redisNow returns the score of a message sent now (Python's time.time()) and the
// whole seconds.
func redisNow() (score float64, sec int64) {
	t := time.Now()
	return float64(t.UnixMicro()) / 1e6, t.Unix()
}

func formatScore(score float64) string { return strconv.FormatFloat(score, 'f', -1, 64) }

func (r *Redis) localNow() time.Duration { return time.Since(r.start) }

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

// attachTag returns the 16 hex digits that follow random in an Attach channel's local
// part: names made by Attach are recognised without remembering them all.
func attachTag(seed maphash.Seed, random string) string {
	return tagHex(maphash.String(seed, random))
}

// isAttachLocal reports whether local is 16 hex digits followed by their attachTag.
func isAttachLocal(seed maphash.Seed, local string) bool {
	return isTagged(local, func(random string) uint64 { return maphash.String(seed, random) })
}

func (r *Redis) attachTag(random string) string { return attachTag(r.seed, random) }

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
	local := randomHex(16)
	for local[16:] == r.attachTag(local[:16]) { // 2^-64: never, but keep names apart
		local = randomHex(16)
	}
	name, key, err := r.localName(prefix, local)
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
	if err := r.begin(ctx); err != nil {
		return "", nil, err
	}
	if deliver == nil {
		return "", nil, errors.New("layers: attach: nil deliver func")
	}
	random := randomHex(8)
	name, key, err := r.localName(prefix, random+r.attachTag(random))
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

// checkMessage applies Send's and GroupSend's checks to msg.
func checkMessage(msg canal.Message) error {
	if err := msg.ValidateType(); err != nil {
		return err
	}
	if _, ok := msg[asgiChannelKey]; ok {
		return fmt.Errorf("%w: %q is reserved", canal.ErrInvalidMessage, asgiChannelKey)
	}
	return nil
}

// encode serializes msg for Redis: random prefix, then the (encrypted) body, with
// extra under __asgi_channel__ unless it is nil.
func (r *Redis) encode(msg canal.Message, extra any) ([]byte, error) {
	b := make([]byte, r.randLen, r.randLen+64)
	r.fillRandom(b)
	extraKey := ""
	if extra != nil {
		extraKey = asgiChannelKey
	}
	var err error
	if r.json {
		b, err = appendJSONMessage(b, msg, extraKey, extra)
	} else {
		b, err = appendMessage(b, msg, extraKey, extra)
	}
	if err != nil {
		return nil, err
	}
	return r.seal(b), nil
}

// seal encrypts b[randLen:] when encryption is on.
func (r *Redis) seal(b []byte) []byte {
	if r.crypter == nil {
		return b
	}
	out := make([]byte, r.randLen, r.randLen+fernetTokenLen(len(b)-r.randLen))
	copy(out, b[:r.randLen])
	return r.crypter.encrypt(out, b[r.randLen:])
}

func (r *Redis) fillRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rand.Uint64())
		copy(b[i:], w[:])
	}
}

// decode reads a stored member into a message, leaving __asgi_channel__ in it.
func (r *Redis) decode(member []byte) (canal.Message, error) {
	if len(member) < r.randLen {
		return nil, fmt.Errorf("%d bytes, shorter than the random prefix", len(member))
	}
	body := member[r.randLen:]
	if r.crypter != nil {
		var err error
		if body, err = r.crypter.decrypt(body, r.expiry+10, time.Now().Unix()); err != nil {
			return nil, err
		}
	}
	if r.json {
		return decodeJSONMessage(body)
	}
	return decodeMessage(body)
}

// Send puts msg on channel's queue key. A process-local channel's key is its
// process's; the message carries the channel's full name.
func (r *Redis) Send(ctx context.Context, channel string, msg canal.Message) error {
	if err := ValidChannelName(channel); err != nil {
		return fmt.Errorf("layers: send: %w", err)
	}
	if err := checkMessage(msg); err != nil {
		return fmt.Errorf("layers: send to %q: %w", channel, err)
	}
	if err := r.begin(ctx); err != nil {
		return err
	}
	var h *redisHost
	var extra any
	nl := nonLocal(channel)
	if strings.IndexByte(channel, '!') >= 0 {
		if r.detachedOwn(channel) {
			return nil // the channel is gone: drop, as the memory layer does
		}
		// Where the receiving process reads (Django's send hashes the full name instead:
		// channels_redis issue 221; Go receivers watch every host).
		h = r.hosts[shardIndex(nl, len(r.hosts))]
		extra = channel
	} else {
		h = r.hosts[int(r.sendRR.Add(1)-1)%len(r.hosts)]
	}
	member, err := r.encode(msg, extra)
	if err != nil {
		return fmt.Errorf("layers: send to %q: %w: %w", channel, canal.ErrInvalidMessage, err)
	}
	score, sec := redisNow()
	capacity := capacityFor(channel, r.patterns, r.capacity)
	args := []string{rueidis.BinaryString(member), formatScore(score), strconv.FormatInt(r.expiry, 10),
		strconv.FormatInt(sec-r.expiry, 10), strconv.Itoa(capacity)}
	var sent int64
	err = redisRetry(ctx, func() (err error) {
		sent, err = redisSendScript.Exec(ctx, h.client, []string{r.prefix + nl}, args).AsInt64()
		return err
	})
	if err != nil {
		return r.fail("send to "+strconv.Quote(channel), err)
	}
	if sent == 0 {
		return fmt.Errorf("layers: send to %q: %w", channel, canal.ErrChannelFull)
	}
	return nil
}

// Receive returns the next message of channel: a process-local channel of this layer
// (from NewChannel) or a normal channel.
func (r *Redis) Receive(ctx context.Context, channel string) (canal.Message, error) {
	if err := ValidChannelName(channel); err != nil {
		return nil, fmt.Errorf("layers: receive: %w", err)
	}
	if err := r.begin(ctx); err != nil {
		return nil, err
	}
	if strings.IndexByte(channel, '!') < 0 {
		return r.receiveNormal(ctx, channel)
	}
	switch {
	case !r.ownChannel(channel):
		return nil, fmt.Errorf("layers: receive: %w: %q is another process's channel", canal.ErrInvalidName, channel)
	case r.isAttachName(channel):
		return nil, fmt.Errorf("layers: receive: %w: %q is an Attach channel; its messages go to its deliver func",
			canal.ErrInvalidName, channel)
	}
	if err := r.watch(r.prefix + nonLocal(channel)); err != nil {
		return nil, err
	}
	return r.receiveLocal(ctx, channel)
}

// receiveLocal waits on the in-memory queue the receive loop fills.
func (r *Redis) receiveLocal(ctx context.Context, channel string) (canal.Message, error) {
	q := r.acquireBuffer(channel)
	if q == nil {
		return nil, canal.ErrLayerClosed
	}
	defer func() {
		q.mu.Lock()
		q.refs--
		q.mu.Unlock()
	}()
	return q.pop(ctx, r.localNow, time.Duration(r.expiry)*time.Second, r.done)
}

// acquireBuffer returns channel's local queue, created if needed, pinned against the
// sweep; nil once closed.
func (r *Redis) acquireBuffer(channel string) *memQueue {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return nil
	}
	q := r.bufferLocked(channel, r.localNow())
	q.mu.Lock()
	q.refs++
	q.mu.Unlock()
	return q
}

// bufferLocked returns channel's local queue, creating it; r.mu must be write-locked.
// Creations sweep idle queues at most once per Expiry.
func (r *Redis) bufferLocked(channel string, now time.Duration) *memQueue {
	if q := r.buffers[channel]; q != nil {
		return q
	}
	r.sweepLocked(now)
	q := &memQueue{capacity: capacityFor(channel, r.patterns, r.capacity)}
	r.buffers[channel] = q
	return q
}

func (r *Redis) sweepLocked(now time.Duration) {
	expiry := time.Duration(r.expiry) * time.Second
	if now-r.lastSweep < expiry {
		return
	}
	r.lastSweep = now
	for name, q := range r.buffers {
		q.mu.Lock()
		q.prune(now, expiry)
		if q.refs == 0 && q.head == len(q.items) {
			delete(r.buffers, name)
		}
		q.mu.Unlock()
	}
}

// receiveNormal waits for the key's poller to hand over a message.
func (r *Redis) receiveNormal(ctx context.Context, channel string) (canal.Message, error) {
	key := r.prefix + channel
	w := make(chan redisRecv, 1)
	r.pmu.Lock()
	if r.closed.Load() {
		r.pmu.Unlock()
		return nil, canal.ErrLayerClosed
	}
	p := r.pollers[key]
	if p == nil {
		p = &redisPoller{key: key}
		r.pollers[key] = p
		r.wg.Add(1)
		go r.poll(p)
	}
	p.waiters = append(p.waiters, w)
	r.pmu.Unlock()

	select {
	case res := <-w:
		return res.msg, res.err
	case <-ctx.Done():
		if r.dropWaiter(p, w) {
			return nil, ctx.Err()
		}
	case <-r.done:
		if r.dropWaiter(p, w) {
			return nil, canal.ErrLayerClosed
		}
	}
	res := <-w // handed a message as we gave up: take it rather than lose it
	return res.msg, res.err
}

// dropWaiter unregisters w; false means the poller already sent it a result.
func (r *Redis) dropWaiter(p *redisPoller, w chan redisRecv) bool {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		return true
	}
	return false
}

// poll is Django's receive for one normal channel, serving its waiters in turn: put
// back what dead receivers left in $inflight, BZPOPMIN, back the message up in
// $inflight, hand it over, then remove the backup. It ends when no one waits.
//
// Two refinements keep receivers in several processes from receiving a message twice
// (channels_redis restores every backup, including those of messages other live
// processes are handling, and cleans up with ZPOPMIN, which may remove another
// process's backup): only backups scored more than redisOrphanAge ago are restored,
// and our backups are scored with the time we popped them, so a live receiver's
// backup is never taken for an orphan; our own backup is removed exactly (ZREM).
func (r *Redis) poll(p *redisPoller) {
	defer r.wg.Done()
	inflight := p.key + "$inflight"
	block := redisReceiveBlock
	if len(r.hosts) > 1 {
		block = redisReceiveBlockSharded
	}
	for {
		r.pmu.Lock()
		if len(p.waiters) == 0 || r.ctx.Err() != nil {
			delete(r.pollers, p.key)
			r.pmu.Unlock()
			return
		}
		r.pmu.Unlock()

		h := r.hosts[int(r.recvRR.Add(1)-1)%len(r.hosts)]
		member, score, err := r.popNormal(h, p.key, inflight, block)
		if err != nil {
			if r.ctx.Err() != nil {
				continue // closing: the waiters see r.done
			}
			r.failWaiters(p, r.fail("receive on "+strconv.Quote(strings.TrimPrefix(p.key, r.prefix)), err))
			continue
		}
		if member == "" {
			continue // timed out: poll again while someone waits
		}
		msg, err := r.decode([]byte(member))
		if err == nil {
			delete(msg, asgiChannelKey)
			if msg.ValidateType() != nil {
				err = errors.New("no valid string \"type\"")
			}
		}
		if err != nil {
			r.reportMalformed(p.key, len(member), err)
			r.dropBackup(h, inflight, member)
			continue
		}
		r.pmu.Lock()
		var w chan redisRecv
		if len(p.waiters) > 0 {
			w = p.waiters[0]
			p.waiters = p.waiters[1:]
		}
		r.pmu.Unlock()
		if w == nil {
			// Everyone gave up meanwhile: put the message back for the next receiver.
			r.putBack(h, p.key, inflight, score, member)
			continue
		}
		w <- redisRecv{msg: msg}
		r.dropBackup(h, inflight, member)
	}
}

func (r *Redis) failWaiters(p *redisPoller, err error) {
	r.pmu.Lock()
	ws := p.waiters
	p.waiters = nil
	r.pmu.Unlock()
	for _, w := range ws {
		w <- redisRecv{err: err}
	}
}

// redisOrphanAge is how old a backup in $inflight must be before a receiver puts it
// back in the queue, taking its receiver for dead.
const redisOrphanAge = 10 * time.Second

// popNormal runs one round of Django's receive_single on host h: the member and its
// score, or "" on timeout.
func (r *Redis) popNormal(h *redisHost, key, inflight string, block time.Duration) (string, float64, error) {
	c := h.client
	now, _ := redisNow()
	cutoff := formatScore(now - redisOrphanAge.Seconds())
	err := redisRetry(r.ctx, func() error {
		if r.cluster {
			return r.restoreEach(c, key, inflight, cutoff)
		}
		return redisRestoreScript.Exec(r.ctx, c, []string{key, inflight}, []string{cutoff}).Error()
	})
	if err != nil && !rueidis.IsRedisNil(err) {
		return "", 0, err
	}
	arr, err := c.Do(r.ctx, c.B().Bzpopmin().Key(key).Timeout(block.Seconds()).Build()).ToArray()
	if rueidis.IsRedisNil(err) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	if len(arr) != 3 {
		return "", 0, fmt.Errorf("BZPOPMIN replied %d elements", len(arr))
	}
	member, err := arr[1].ToString()
	if err != nil {
		return "", 0, err
	}
	score, err := arr[2].AsFloat64()
	if err != nil {
		return "", 0, err
	}
	// Back it up, scored with the time of the pop (see poll). A failure here loses
	// nothing more than Django would.
	popped, _ := redisNow()
	c.Do(r.ctx, c.B().Zadd().Key(inflight).ScoreMember().ScoreMember(popped, member).Build())
	return member, score, nil
}

// restoreEach is redisRestoreScript for Cluster mode, where a key and its $inflight
// live in different slots: for each orphaned backup, ZREM it from $inflight, then ZADD
// it to the queue only if this receiver's ZREM removed it, so that two receivers
// never both restore it. A receiver dying between the two loses the message.
func (r *Redis) restoreEach(c rueidis.Client, key, inflight, cutoff string) error {
	backed, err := c.Do(r.ctx, c.B().Zrangebyscore().Key(inflight).Min("-inf").Max("("+cutoff).
		Withscores().Build()).AsZScores()
	if err != nil {
		return err
	}
	for _, z := range backed {
		n, err := c.Do(r.ctx, c.B().Zrem().Key(inflight).Member(z.Member).Build()).AsInt64()
		if err != nil {
			return err
		}
		if n == 1 {
			err := c.Do(r.ctx, c.B().Zadd().Key(key).ScoreMember().ScoreMember(z.Score, z.Member).Build()).Error()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// putBack returns a popped message nobody took to the queue and drops its backup. In
// Cluster mode these are two commands: the ZADD first, so a failure in between may
// duplicate the message but never loses it.
func (r *Redis) putBack(h *redisHost, key, inflight string, score float64, member string) {
	c := h.client
	if !r.cluster {
		redisPutBackScript.Exec(r.ctx, c, []string{key, inflight}, []string{formatScore(score), member})
		return
	}
	if c.Do(r.ctx, c.B().Zadd().Key(key).ScoreMember().ScoreMember(score, member).Build()).Error() == nil {
		r.dropBackup(h, inflight, member)
	}
}

// dropBackup removes our backup of a handled message.
func (r *Redis) dropBackup(h *redisHost, inflight, member string) {
	h.client.Do(r.ctx, h.client.B().Zrem().Key(inflight).Member(member).Build())
}

// loop is a host's receive loop: it pops this process's queue keys (only key, when
// set) and routes each message to its local channel. It never blocks on a consumer.
func (r *Redis) loop(h *redisHost, only string) {
	defer r.wg.Done()
	var backoff time.Duration
	failing := false
	var downSince time.Time
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	logAttrs := []any{"host", h.name}
	var fixed []string
	if only != "" {
		logAttrs = append(logAttrs, "key", only)
		fixed = []string{only}
	}
	for r.ctx.Err() == nil {
		keys := fixed
		if keys == nil {
			keys = *r.keys.Load()
		}
		c := h.client
		arr, err := c.Do(r.ctx, c.B().Bzpopmin().Key(keys...).Timeout(redisLoopBlock.Seconds()).Build()).ToArray()
		if err == nil && len(arr) != 3 {
			err = fmt.Errorf("BZPOPMIN replied %d elements", len(arr))
		}
		if err != nil && !rueidis.IsRedisNil(err) {
			if r.ctx.Err() != nil {
				return
			}
			if !failing {
				failing, downSince = true, time.Now()
				r.log.Warn("layers: redis: receive loop cannot reach Redis; retrying", append(logAttrs, "err", err)...)
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), redisMaxBackoff)
			timer.Reset(backoff/2 + rand.N(backoff/2+1))
			select {
			case <-timer.C:
			case <-r.ctx.Done():
				return
			}
			continue
		}
		if failing {
			failing, backoff = false, 0
			down := time.Since(downSince)
			r.reconnects.Add(1)
			r.log.Info("layers: redis: receive loop resumed", append(logAttrs, "down", down)...)
			if r.rejoining.CompareAndSwap(false, true) { // Cluster mode has a loop per key
				r.wg.Add(1)
				go r.rejoin(slices.Index(r.hosts, h))
			}
			callOnReconnect(r.log, r.onReconnect, h.name, down)
		}
		if err != nil { // timed out
			r.mu.Lock()
			r.sweepLocked(r.localNow())
			r.mu.Unlock()
			continue
		}
		key, _ := arr[0].ToString()
		member, _ := arr[1].ToString()
		r.route(key, member)
		// More may be waiting: take them in batches without blocking.
		for r.ctx.Err() == nil {
			zs, err := c.Do(r.ctx, c.B().Zpopmin().Key(key).Count(redisDrainBatch).Build()).AsZScores()
			if err != nil {
				break // the next BZPOPMIN reports it
			}
			for _, z := range zs {
				r.route(key, z.Member)
			}
			if len(zs) < redisDrainBatch {
				break
			}
		}
	}
}

// route hands a message popped from a process queue to its channel(s).
func (r *Redis) route(key, member string) {
	msg, err := r.decode([]byte(member))
	if err != nil {
		r.reportMalformed(key, len(member), err)
		return
	}
	target, ok := msg[asgiChannelKey]
	delete(msg, asgiChannelKey)
	if msg.ValidateType() != nil {
		r.reportMalformed(key, len(member), errors.New("no valid string \"type\""))
		return
	}
	if r.closed.Load() {
		return
	}
	now := r.localNow()
	switch t := target.(type) {
	case string:
		r.deliverLocal(t, msg, now)
	case []any:
		names := make([]string, 0, len(t))
		for _, e := range t {
			if name, ok := e.(string); ok {
				names = append(names, name)
			}
		}
		if len(names) != len(t) {
			r.reportMalformed(key, len(member), errors.New("__asgi_channel__ lists a non-string"))
		}
		r.deliverMany(names, msg, now)
	default:
		if !ok {
			err = errors.New("no __asgi_channel__ on a process queue")
		} else {
			err = fmt.Errorf("__asgi_channel__ is a %T", t)
		}
		r.reportMalformed(key, len(member), err)
	}
}

// deliverMany is deliverLocal for a group copy's channels, looking the attached ones
// up under one lock.
func (r *Redis) deliverMany(names []string, msg canal.Message, now time.Duration) {
	ls := make([]*redisListener, len(names))
	r.mu.RLock()
	for i, name := range names {
		ls[i] = r.listeners[name]
	}
	r.mu.RUnlock()
	for i, l := range ls {
		switch {
		case l == nil:
			r.deliverLocal(names[i], msg, now) // not attached: the general path
		case l.detached.Load():
			r.undeliverable.Add(1)
		case r.call(l, msg):
			r.delivered.Add(1)
		default:
			r.dropped.Add(1)
		}
	}
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

// call runs l's deliver func; a panic in it is logged and counts as a drop rather
// than killing the receive loop (and the process).
func (r *Redis) call(l *redisListener, msg canal.Message) bool {
	return callDeliver(r.log, l, msg)
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

// deliverLocal hands msg to a local channel without ever waiting.
func (r *Redis) deliverLocal(name string, msg canal.Message, now time.Duration) {
	if !r.ownChannel(name) {
		r.undeliverable.Add(1)
		return
	}
	r.mu.RLock()
	l := r.listeners[name]
	q := r.buffers[name]
	r.mu.RUnlock()
	switch {
	case l != nil:
		switch {
		case l.detached.Load():
			r.undeliverable.Add(1)
		case r.call(l, msg):
			r.delivered.Add(1)
		default:
			r.dropped.Add(1)
		}
		return
	case r.isAttachName(name):
		r.undeliverable.Add(1) // detached
		return
	case q == nil:
		r.mu.Lock()
		if r.closed.Load() {
			r.mu.Unlock()
			return
		}
		q = r.bufferLocked(name, now)
		r.mu.Unlock()
	}
	if q.push(msg, now, time.Duration(r.expiry)*time.Second) {
		r.delivered.Add(1)
	} else {
		r.dropped.Add(1)
	}
}

// reportMalformed counts a skipped member and logs it, at most once a second.
func (r *Redis) reportMalformed(key string, size int, err error) {
	r.malformed.report(r.log, "layers: redis: skipped a message that cannot be read", "key", key, size, err)
}

// GroupAdd adds channel to group, or refreshes its join time: ZADD and EXPIRE.
func (r *Redis) GroupAdd(ctx context.Context, group, channel string) error {
	if err := ValidGroupName(group); err != nil {
		return fmt.Errorf("layers: group add: %w", err)
	}
	if err := ValidChannelName(channel); err != nil {
		return fmt.Errorf("layers: group add: %w", err)
	}
	if err := r.begin(ctx); err != nil {
		return err
	}
	if r.detachedOwn(channel) {
		return nil
	}
	h := r.hosts[shardIndex(group, len(r.hosts))]
	key := r.prefix + ":group:" + group
	score, _ := redisNow()
	c := h.client
	err := redisRetry(ctx, func() error {
		for _, res := range c.DoMulti(ctx,
			c.B().Zadd().Key(key).ScoreMember().ScoreMember(score, channel).Build(),
			c.B().Expire().Key(key).Seconds(r.groupExpiry).Build()) {
			if err := res.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return r.fail("group add", err)
	}
	if r.ownChannel(channel) {
		r.remember(group, channel)
		if r.live != nil {
			r.live.joined(group)
		}
	}
	return nil
}

// GroupDiscard removes channel from group (ZREM); silent when absent.
func (r *Redis) GroupDiscard(ctx context.Context, group, channel string) error {
	if err := ValidGroupName(group); err != nil {
		return fmt.Errorf("layers: group discard: %w", err)
	}
	if err := ValidChannelName(channel); err != nil {
		return fmt.Errorf("layers: group discard: %w", err)
	}
	if err := r.begin(ctx); err != nil {
		return err
	}
	r.forget(group, channel)
	h := r.hosts[shardIndex(group, len(r.hosts))]
	c := h.client
	err := redisRetry(ctx, func() error {
		return c.Do(ctx, c.B().Zrem().Key(r.prefix+":group:"+group).Member(channel).Build()).Error()
	})
	if err != nil {
		return r.fail("group discard", err)
	}
	return nil
}

// groupBucket is one queue key's share of a group_send.
type groupBucket struct {
	key      string
	host     int
	capacity int
	channels []string // the message's __asgi_channel__ list
}

// GroupSend sends msg to every member of group, as channels_redis does: one copy per
// queue key listing that key's member channels, added by one script per host that
// skips full keys.
func (r *Redis) GroupSend(ctx context.Context, group string, msg canal.Message) error {
	if err := ValidGroupName(group); err != nil {
		return fmt.Errorf("layers: group send: %w", err)
	}
	if err := checkMessage(msg); err != nil {
		return fmt.Errorf("layers: group send to %q: %w", group, err)
	}
	if err := r.begin(ctx); err != nil {
		return err
	}
	gh := r.hosts[shardIndex(group, len(r.hosts))]
	gkey := r.prefix + ":group:" + group
	score, sec := redisNow()
	c := gh.client
	var members []string
	err := redisRetry(ctx, func() error {
		res := c.DoMulti(ctx,
			c.B().Zremrangebyscore().Key(gkey).Min("0").Max(strconv.FormatInt(sec-r.groupExpiry, 10)).Build(),
			c.B().Zrange().Key(gkey).Min("0").Max("-1").Build())
		if err := res[0].Error(); err != nil {
			return err
		}
		var err error
		members, err = res[1].AsStrSlice()
		return err
	})
	if err != nil {
		return r.fail("group send", err)
	}
	members = r.skipInvalidMembers(group, members)
	if len(members) == 0 {
		return nil
	}

	// Pre-encode the message's own pairs once; each key's copy adds its list.
	var pairs []byte
	if !r.json {
		for k, v := range msg {
			if pairs, err = appendString(pairs, k); err == nil {
				pairs, err = appendValue(pairs, v, 1)
			}
			if err != nil {
				return fmt.Errorf("layers: group send to %q: %w: %w (key %q)", group, canal.ErrInvalidMessage, err, k)
			}
		}
	}

	var buckets []*groupBucket
	index := make(map[string]int)
	var dead []string
	stale := 0
	var deadPIDs map[string]bool
	if r.live != nil {
		if v, anyDead := r.live.verdicts(group, members); anyDead {
			deadPIDs = v
		}
	}
	for _, ch := range members {
		if r.detachedOwn(ch) {
			dead = append(dead, ch)
			continue
		}
		if deadPIDs != nil && deadPIDs[goProcessID(ch)] {
			dead = append(dead, ch) // its Go process stopped refreshing its liveness key
			stale++
			continue
		}
		nl := nonLocal(ch)
		key := r.prefix + nl
		i, ok := index[key]
		if !ok {
			i = len(buckets)
			index[key] = i
			buckets = append(buckets, &groupBucket{key: key, host: shardIndex(nl, len(r.hosts)),
				capacity: capacityFor(ch, r.patterns, r.capacity)})
		}
		buckets[i].channels = append(buckets[i].channels, ch)
	}

	expiry := strconv.FormatInt(r.expiry, 10)
	cutoff := strconv.FormatInt(sec-r.expiry, 10)
	var errs []error
	for hi, h := range r.hosts {
		var keys, bodies, caps []string
		for _, b := range buckets {
			if b.host != hi {
				continue
			}
			body, err := r.groupMember(msg, len(msg), pairs, b.channels)
			if err != nil {
				return fmt.Errorf("layers: group send to %q: %w: %w", group, canal.ErrInvalidMessage, err)
			}
			keys = append(keys, b.key)
			bodies = append(bodies, rueidis.BinaryString(body))
			caps = append(caps, strconv.Itoa(b.capacity))
		}
		if len(keys) == 0 {
			continue
		}
		var full int64
		var err error
		if r.cluster {
			full, err = r.groupSendEach(ctx, h.client, keys, bodies, caps, formatScore(score), expiry, cutoff)
		} else {
			args := append(append(bodies, caps...), formatScore(score), expiry, cutoff)
			err = redisRetry(ctx, func() (err error) {
				full, err = redisGroupSendScript.Exec(ctx, h.client, keys, args).AsInt64()
				return err
			})
		}
		if err != nil {
			errs = append(errs, r.fail("group send", err))
			if full == 0 {
				continue
			}
		}
		if full > 0 {
			r.groupFull.Add(uint64(full))
			r.log.Info("layers: redis: group send skipped full channels",
				"group", group, "full_keys", full, "members", len(members))
		}
	}
	if len(dead) > 0 {
		// Detached channels of this process never leave on their own, nor do those of
		// dead processes: prune them.
		if c.Do(ctx, c.B().Zrem().Key(gkey).Member(dead...).Build()).Error() == nil && stale > 0 {
			r.staleMembers.Add(uint64(stale))
		}
	}
	return errors.Join(errs...)
}

// skipInvalidMembers returns members without the names that are not valid UTF-8,
// counting and logging them (rate-limited; the group, never the bytes). Such a name
// cannot be encoded for Django (msgpack strings are UTF-8) and is no channel's, so it
// must cost that member only, not the group send. It allocates only when it skips.
func (r *Redis) skipInvalidMembers(group string, members []string) []string {
	bad := 0
	for _, ch := range members {
		if !utf8.ValidString(ch) {
			bad++
		}
	}
	if bad == 0 {
		return members
	}
	kept := make([]string, 0, len(members)-bad)
	for _, ch := range members {
		if utf8.ValidString(ch) {
			kept = append(kept, ch)
		}
	}
	n := r.invalidMembers.Add(uint64(bad))
	r.invalidMembersLog.Log(r.log, slog.LevelWarn, group,
		"layers: redis: group send skipped members whose names are not UTF-8 (not written by a channel layer)",
		"group", group, "skipped", bad, "invalid_members_total", n)
	return kept
}

// groupSendSHA is redisGroupSendScript's SHA-1, for groupSendEach's EVALSHA.
var groupSendSHA = scriptSHA(redisGroupSendSrc)

// groupSendEach runs the group send script once per key (Cluster mode: the keys are
// in different slots), pipelined; the cluster client sends each to its node. It
// returns how many keys were full; keys whose script failed on a connection that had
// died idle are retried, the others reported in the error.
func (r *Redis) groupSendEach(ctx context.Context, c rueidis.Client, keys, bodies, caps []string,
	score, expiry, cutoff string) (int64, error) {
	pending := make([]int, len(keys))
	for i := range pending {
		pending[i] = i
	}
	var full int64
	var failed int
	var firstErr error
	for attempt := 0; len(pending) > 0; attempt++ {
		cmds := make(rueidis.Commands, len(pending))
		for j, i := range pending {
			cmds[j] = c.B().Evalsha().Sha1(groupSendSHA).Numkeys(1).Key(keys[i]).
				Arg(bodies[i], caps[i], score, expiry, cutoff).Build()
		}
		res := c.DoMulti(ctx, cmds...)
		var again []int
		for j, i := range pending {
			n, err := res[j].AsInt64()
			if isNoScript(err) { // first use on that node: EVAL loads it
				n, err = c.Do(ctx, c.B().Eval().Script(redisGroupSendSrc).Numkeys(1).Key(keys[i]).
					Arg(bodies[i], caps[i], score, expiry, cutoff).Build()).AsInt64()
			}
			switch {
			case err == nil:
				full += n
			case redisStaleConn(err) && attempt < redisMaxStaleRetries && ctx.Err() == nil:
				again = append(again, i)
			default:
				failed++
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		pending = again
	}
	if firstErr != nil {
		return full, fmt.Errorf("%d of %d queue keys: %w", failed, len(keys), firstErr)
	}
	return full, nil
}

// groupMember builds one key's stored copy: msg plus __asgi_channel__ = channels.
func (r *Redis) groupMember(msg canal.Message, n int, pairs []byte, channels []string) ([]byte, error) {
	if r.json {
		return r.encode(msg, channels)
	}
	b := make([]byte, r.randLen, r.randLen+len(pairs)+32+len(channels)*72)
	r.fillRandom(b)
	b = appendMapHeader(b, n+1)
	b = append(b, pairs...)
	b, _ = appendString(b, asgiChannelKey)
	b = appendArrayHeader(b, len(channels))
	var err error
	for _, ch := range channels {
		if b, err = appendString(b, ch); err != nil {
			return nil, err
		}
	}
	return r.seal(b), nil
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
			err := redisRetry(ctx, func() error {
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
	err := redisRetry(ctx, func() (err error) {
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
		err := redisRetry(ctx, func() error {
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
	if !r.closed.CompareAndSwap(false, true) {
		r.mu.Unlock()
		return nil
	}
	close(r.done)
	for _, l := range r.listeners {
		l.detached.Store(true)
	}
	r.listeners = make(map[string]*redisListener)
	r.buffers = make(map[string]*memQueue)
	r.mu.Unlock()

	// receiveNormal starts pollers under pmu after checking closed: once we hold pmu,
	// none will start, so wg.Wait below cannot race a wg.Add.
	r.pmu.Lock()
	r.pmu.Unlock()
	r.stop() // interrupts BZPOPMIN
	finished := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(finished)
	}()
	var err error
	select {
	case <-finished:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if r.live != nil {
		r.live.remove(ctx) // members left behind are now stale for the others
	}
	for _, h := range r.hosts {
		h.client.Close()
	}
	return err
}
