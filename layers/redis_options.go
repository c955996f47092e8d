package layers

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/rueidis"
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
	// ReceiveBuffer bounds the bytes of messages a receive loop has taken from this
	// process's queue in Redis and not yet handed to their channels (at most 1,024
	// messages too; one larger message still passes alone). While routing is slower
	// than Django publishes (a burst to thousands of local members on a busy CPU), the
	// loop keeps emptying the queue into this buffer, so Capacity is not reached and
	// channels_redis does not drop whole group messages; past it, the queue fills in
	// Redis and Capacity applies. A group message for N local members is about 50*N
	// bytes (1 MB at 19,000), so the default 16 MiB absorbs 16 of those. Raising it
	// trades memory for burst loss. Default 16 MiB, at most 1 GiB.
	ReceiveBuffer int
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
	// History names the groups that keep a history (opt-in per group-name glob;
	// first match wins): Publish and GroupSend to them give every message a
	// position, and History reads what a reconnecting client missed. Django
	// publishes to them with django_canal.history.publish. See Redis.Publish.
	History []HistoryRule
}

// Defaults shared with channels_redis.
const (
	DefaultRedisHost          = "redis://localhost:6379"
	DefaultRedisPrefix        = "asgi"
	DefaultRandomPrefixLength = 12
)

// RedisPubSubOptions configures NewRedisPubSub. The zero value gives channels_redis'
// defaults; Hosts, Prefix, SymmetricEncryptionKeys and SerializerFormat must match the
// Django side's settings.
type RedisPubSubOptions struct {
	// Hosts are the Redis servers as URLs, in Django's order (default
	// ["redis://localhost:6379"]). Hosts, Cluster and Sentinel are mutually exclusive.
	Hosts []string
	// Cluster, when set, are seed addresses ("host:port") of a Redis Cluster (Redis 7
	// or later): the layer uses sharded Pub/Sub (SPUBLISH, SSUBSCRIBE), so a message
	// goes only to the shard that owns its channel's slot instead of being broadcast
	// to every node. Django cannot use a cluster: this mode is for Go-only
	// deployments. Credentials and TLS go through ClientOptions.
	Cluster []string
	// Sentinel, when set, finds the master through Redis Sentinel and follows it
	// through failovers.
	Sentinel *SentinelOptions
	// OnReconnect, when set, is called after a subscriber connection is back and
	// subscribed again, with its host and how long it had been down: everything
	// published to its channels meanwhile is lost, and the hook is how an application
	// learns that it should resync. In Cluster mode it is also called when channels
	// the server unsubscribed (their slot moved to another master) are subscribed
	// again on their new master. It runs on a layer goroutine: it should return
	// quickly, and may call the layer. Stats().Reconnects counts the same events.
	OnReconnect func(host string, down time.Duration)
	// Prefix starts channel names and group Pub/Sub channels (default "asgi").
	Prefix string
	// Capacity bounds each local channel's in-memory queue (default 100); the
	// overflow is dropped and counted. Pub/Sub itself has no capacity: Send never
	// returns canal.ErrChannelFull.
	Capacity int
	// ChannelCapacity overrides Capacity per channel-name glob; the first match wins.
	ChannelCapacity []Capacity
	// Expiry is how long a message waits in a local queue (default 60 s), and how long
	// a channel read with Receive stays subscribed once nobody reads it.
	Expiry time.Duration
	// SymmetricEncryptionKeys turns on Fernet (channels_redis 4.2.1+ only).
	SymmetricEncryptionKeys []string
	// SerializerFormat is "msgpack" (default) or "json" (channels_redis 4.2.1+).
	SerializerFormat string
	// ClientOptions may change each host's rueidis options.
	ClientOptions func(*rueidis.ClientOption)
	// Logger receives warnings (default slog.Default()); never message contents.
	Logger *slog.Logger
}

// redisCommon is the subset of RedisOptions and RedisPubSubOptions that both layers
// read the same way (redisBase). The two options structs keep their own field lists,
// so that literals users write stay flat; they meet here.
type redisCommon struct {
	hosts, cluster  []string
	sentinel        *SentinelOptions
	onReconnect     func(host string, down time.Duration)
	prefix          string
	capacity        int
	channelCapacity []Capacity
	expiry          time.Duration
	keys            []string // SymmetricEncryptionKeys
	format          string   // SerializerFormat
	clientOptions   func(*rueidis.ClientOption)
	logger          *slog.Logger
	history         []HistoryRule // RedisOptions.History (redis_history.go)
}

func (o *RedisOptions) common() redisCommon {
	return redisCommon{hosts: o.Hosts, cluster: o.Cluster, sentinel: o.Sentinel, onReconnect: o.OnReconnect,
		prefix: o.Prefix, capacity: o.Capacity, channelCapacity: o.ChannelCapacity, expiry: o.Expiry,
		keys: o.SymmetricEncryptionKeys, format: o.SerializerFormat, clientOptions: o.ClientOptions, logger: o.Logger,
		history: o.History}
}

func (o *RedisPubSubOptions) common() redisCommon {
	return redisCommon{hosts: o.Hosts, cluster: o.Cluster, sentinel: o.Sentinel, onReconnect: o.OnReconnect,
		prefix: o.Prefix, capacity: o.Capacity, channelCapacity: o.ChannelCapacity, expiry: o.Expiry,
		keys: o.SymmetricEncryptionKeys, format: o.SerializerFormat, clientOptions: o.ClientOptions, logger: o.Logger}
}

// validate checks the shared options; layer ("redis", "redis pubsub") starts the errors.
// The codec's settings are checked by newCodec.
func (c *redisCommon) validate(layer string) error {
	switch {
	case c.expiry < 0:
		return fmt.Errorf("layers: %s: negative Expiry %v", layer, c.expiry)
	case c.capacity < 0:
		return fmt.Errorf("layers: %s: negative Capacity %d", layer, c.capacity)
	}
	if err := validateCapacities(c.channelCapacity); err != nil {
		return err
	}
	return checkModes(layer, c.hosts, c.cluster, c.sentinel)
}
