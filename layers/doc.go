// Package layers holds channel-layer implementations of canal.Layer:
//
//   - NewMemory: in-process, the embedded default for demos, tests and single-process servers.
//   - NewRedis: Redis through rueidis, wire-compatible with channels_redis, so Django's
//     group_send reaches Go consumers and back.
//   - NewRedisPubSub: Redis Pub/Sub, wire-compatible with channels_redis.pubsub.
//
// All of them follow Channels' semantics: names of at most 99 characters, capacity per
// channel (100 by default, with per-pattern overrides), ChannelFull from Send only,
// GroupSend skipping full members, message expiry 60 s and group expiry 24 h. As in
// Channels, a message is the sender's no more once sent: NewMemory deep-copies it
// (GroupSend once for all members, who share that copy read-only), the Redis layers
// serialize it.
//
// With NewRedis, all of a process's channels share one queue key, and so one capacity
// (as with channels_redis, whose group_send skips a full key silently): the layer
// empties that queue into RedisOptions.ReceiveBuffer (16 MiB) while it routes, so a
// burst to thousands of local members is not lost to a slow moment of the CPU. A group
// message's copy lists its local members (about 50 bytes each) and is read in place.
//
// What other writers put in Redis is not trusted: a stored message that cannot be read
// is skipped (Stats().Malformed), and a group member whose name is not UTF-8 is
// skipped by GroupSend (Stats().InvalidMembers) rather than failing the send for the
// whole group; both are logged at most once a second, never with their contents.
//
// # Cluster and Sentinel
//
// Both Redis layers reach Redis in one of three ways, chosen by mutually exclusive
// options: Hosts (servers as URLs, sharded on the client with channels_redis' CRC
// function, as Django does), Cluster (seed addresses of a Redis Cluster) or Sentinel
// (sentinel addresses and a master set name).
//
// Sentinel mode sends everything to the master the sentinels name and follows it
// through failovers. It keeps the single-server guarantees below and stays
// wire-compatible: Django reaches the same master with a channels_redis host entry
// {"sentinels": [...], "master_name": ...} (channels_redis 4.1 or later; 4.0 forgets
// those settings after its first connection pool). A failover loses the writes the old
// master had acknowledged but not yet replicated (replication is asynchronous):
// queued messages and group memberships among them. While no master answers, calls
// fail with canal.ErrUnavailable.
//
// Cluster mode is for Go-only deployments: channels_redis cannot use a Redis Cluster,
// so Django cannot share it. Key names and the stored format stay exactly those of
// channels_redis (no {hash tags}), which means the keys one operation touches usually
// live in different slots, on different masters. The layers never send a command or a
// script over keys of several slots; what holds in Cluster mode:
//
//   - Redis.Send is one script on one queue key (prune expired messages, check
//     capacity, ZADD, EXPIRE): atomic, exactly as on one server. ErrChannelFull keeps
//     its meaning.
//   - Redis.GroupSend reads the group key (one slot), then runs the capacity script
//     once per queue key, pipelined to the masters that own them: atomic per key, not
//     across keys. Another client may observe the message on some members' queues and
//     not yet on others'; if a master fails part-way, the members on the others got
//     it and GroupSend returns an error wrapping canal.ErrUnavailable. A group send to
//     members in N processes is N scripts (one Lua script per host on a single
//     server).
//   - Redis.Receive on a normal channel (a worker) pops the message, then backs it
//     up in "<key>$inflight" with a second command (another slot); backups orphaned
//     by a dead receiver are put back with a ZREM then a ZADD, so two receivers never
//     both restore one, but a receiver that dies between the two commands loses that
//     message. On one server both steps are atomic scripts.
//   - The receive loop runs one BZPOPMIN per queue key (its own goroutine and
//     blocking connection) instead of one BZPOPMIN over all of the process's keys.
//   - Flush deletes the prefix's keys on every master that CLUSTER SLOTS names, one
//     master after the other: not atomic across masters.
//   - Ordering: messages on one queue key are ordered by score (the sender's clock),
//     as on one server; nothing orders messages on different keys.
//   - Failover: replication is asynchronous, so writes a master acknowledged but had
//     not replicated when it failed are lost (queued messages, memberships, liveness
//     keys). While a master's slots have no master (it died and has no replica, or
//     the failover is under way), operations on its keys fail with
//     canal.ErrUnavailable; the others go on.
//   - RedisPubSub uses sharded Pub/Sub (SPUBLISH, SSUBSCRIBE; Redis 7 or later): a
//     message goes to the master that owns its channel's slot and its replicas only,
//     instead of being broadcast to every node. The layer keeps one subscriber
//     connection per master. Messages one sender publishes to one channel arrive in
//     order; nothing orders messages of different channels. When a slot moves
//     (resharding, failover), Redis unsubscribes its channels; the layer subscribes
//     them again on the new owner and reports the gap, in which messages were lost.
//
// # Outages, reconnection and what may be lost
//
// Both layers reconnect by themselves with backoff; nothing has to be restarted. Each
// recovery is counted in Stats().Reconnects and reported to the OnReconnect hook of
// the options, with the host and how long it was down, so that the application can
// resync what it may have lost. The delivery guarantees:
//
//   - Redis (core): a Send, GroupSend, GroupAdd or GroupDiscard made while Redis is
//     unreachable fails at the caller with canal.ErrUnavailable: nothing is queued
//     in the process to be sent later. Messages already stored in Redis wait there
//     (for Expiry) and are delivered once the receive loop is back, but only if Redis
//     kept them: a Redis restart without persistence (or a failover that lost
//     unreplicated writes) loses every queued message and every group membership.
//     The layer then adds its own channels back to their groups by itself, as soon
//     as its receive loop is back, so open sockets keep their groups (channels_redis
//     leaves them silently deaf). OnReconnect says what may have been lost in between,
//     for the application to resync; Stats().LivenessLapses also counts
//     the process finding its liveness key gone. Messages the loop has popped are in
//     this process's memory only: a crash loses them, as with channels_redis.
//   - RedisPubSub: fire and forget, at most once. Everything published while a
//     subscriber connection is down is lost, and nothing says what it was; the hook
//     says when, for how long, and on which host.
//
// # Stale group members
//
// A process that dies without GroupDiscard leaves its channels in group sorted sets,
// where channels_redis keeps them for group_expiry (a day). The core layer cleans up
// after dead Go processes:
//
//   - Each layer's process id is 16 random hex digits followed by 16 hex digits of a
//     fixed hash of them. The names stay "<prefix>.<32 hex>!<local>", valid for
//     Django, yet any Go process can tell a Go process's channel from Django's
//     (whose process ids are uuid4().hex: one in 2^64 would pass). Only names proven
//     Go-owned this way are ever removed: Django's members, normal (worker) channels
//     and names of other shapes are never touched.
//   - Once a layer has made a channel it keeps a liveness key
//     "<prefix>:canal:alive:<process id>" with a TTL of RedisOptions.Liveness
//     (default 30 s), set again every Liveness/3 by one goroutine and deleted by
//     Close. Its value is the refresh period, so readers judge each process by its
//     own setting.
//   - GroupSend skips and removes (ZREM) the members of processes found dead, and
//     hands the processes it has no fresh verdict on to that goroutine, which reads
//     their keys (one pipelined GET per host) without delaying the send. A verdict is
//     reused for Liveness/6. Every 2×Liveness the goroutine also reads the groups this
//     process's own channels joined (pipelined ZRANGE) and removes dead processes'
//     members there, so groups nobody sends to are cleaned too.
//   - A process is dead only when its key is missing at two checks at least 1.5 of its
//     refresh periods apart: a live process sets its key again within one period, so
//     a key lost to a flush (Django's flush deletes "<prefix>*") or to a Redis restart
//     never condemns live members. A process cut off from Redis for longer than
//     Liveness is taken for dead, and finds out when it gets through again
//     (Stats().LivenessLapses, a warning in the log).
//   - With the default Liveness, a crashed process's members stop receiving group
//     messages within about 2×Liveness (one minute) of the crash in groups that get
//     messages, and are gone from the others within about 4×Liveness.
//     Stats().StaleMembers counts the removals.
//   - Liveness < 0 turns it off: no key, no removal, and a process id without the
//     hash, so that other processes never take this one's members for stale.
//
// # Where the code is
//
// The two Redis layers share one base, redisBase in redis_base.go, which holds their
// clients, prefix, codec, counters and shutdown; redis.go, redis_send.go,
// redis_receive.go, redis_loop.go, redis_group.go and redis_liveness.go hold the core
// layer, redis_pubsub*.go the Pub/Sub layer. A new backend feature such as presence
// or history goes in a file of its own (redis_presence.go, redis_history.go) as
// methods on redisBase, with its options added to redisCommon in redis_options.go, so
// that both layers take them the same way.
//
// # Canal's own keys next to channels_redis'
//
// Package presence keeps its keys under the prefix "canal:" (not the layer's "asgi"):
// canal:presence:<group> is a hash with one field per connection
// ("<process>:<channel>" → a JSON entry) and one count per user ("#<user id>"); it
// expires 24 h after the last join and is deleted when the last connection leaves.
// canal:presence.alive:<process> is a 30-second liveness key refreshed every 10 s, so
// a crashed process's entries are skipped and deleted by the next reader. Per-user
// addressing adds no key type: a user's sockets are members of the ordinary group
// "canal.user.<pk>" (asgi:group:canal.user.<pk>), with channels_redis' group expiry.
//
// Group history (RedisOptions.History, Django's REALTIME_HISTORY) lives under the
// layer's prefix, so Django's flush clears it with the rest:
// <prefix>:history:{<group>}:meta is a hash (s: the last offset, e: the epoch) that
// expires HistoryMetaTTL (24 h) after the group's last message, and
// <prefix>:history:{<group>} a stream of at most the rule's Size entries, trimmed to
// its TTL and expiring TTL after the last message. The braces keep both in one Cluster
// slot. Details in redis_history.go.
package layers
