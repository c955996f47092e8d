package layers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/redisconn"
)

// Send's and GroupSend's scripts: each runs atomically on its host, with the
// effects of the commands channels_redis sends one by one.
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

// Send puts msg on channel's queue key. A process-local channel's key is its
// process's; the message carries the channel's full name.
func (r *Redis) Send(ctx context.Context, channel string, msg canal.Message) error {
	if err := r.beginSend(ctx, "send", channel, ValidChannelName(channel), checkMessage(msg)); err != nil {
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
	args := []string{rueidis.BinaryString(member), formatScore(score), strconv.FormatInt(r.expirySec, 10),
		strconv.FormatInt(sec-r.expirySec, 10), strconv.Itoa(capacity)}
	var sent int64
	err = redisconn.Retry(ctx, func() (err error) {
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

// groupBucket is one queue key's share of a group_send.
type groupBucket struct {
	key      string
	host     int
	capacity int
	channels []string // the message's __asgi_channel__ list
}

// GroupSend sends msg to every member of group, as channels_redis does: one copy per
// queue key listing that key's member channels, added by one script per host that
// skips full keys. A group with a history rule (RedisOptions.History) is published
// to instead (Publish), so that its messages get positions.
func (r *Redis) GroupSend(ctx context.Context, group string, msg canal.Message) error {
	if rule := r.historyRule(group); rule != nil { // history hook (redis_history.go)
		if err := checkPublish(group, msg); err != nil {
			return err
		}
		if err := r.begin(ctx); err != nil {
			return err
		}
		_, err := r.publish(ctx, group, msg, rule)
		return err
	}
	if err := r.beginSend(ctx, "group send", group, ValidGroupName(group), checkMessage(msg)); err != nil {
		return err
	}
	gh := shardIndex(group, len(r.hosts))
	gkey := r.prefix + ":group:" + group
	score, sec := redisNow()
	members, err := r.groupMembers(ctx, gh, gkey, sec)
	if err != nil {
		return r.fail("group send", err)
	}
	g := r.groupTargets(group, members)
	if len(g.buckets) == 0 && len(g.dead) == 0 {
		return nil
	}
	pairs, err := r.groupPairs(group, msg)
	if err != nil {
		return err
	}
	err = r.groupDeliver(ctx, group, g, -1, score, sec, func(b *groupBucket) ([]byte, error) {
		return r.groupMember(msg, len(msg), pairs, b.channels)
	})
	r.pruneGroup(ctx, gh, gkey, g)
	return err
}

// groupMembers reads group's members from host gh, after pruning those older than
// GroupExpiry, in ZRANGE order.
func (r *Redis) groupMembers(ctx context.Context, gh int, gkey string, sec int64) ([]string, error) {
	c := r.hosts[gh].client
	var members []string
	err := redisconn.Retry(ctx, func() error {
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
	return members, err
}

// groupTargets is where a group send goes: members bucketed by queue key, and the
// members to prune (detached channels of this process, channels of dead processes).
type groupTargets struct {
	members int
	buckets []*groupBucket
	dead    []string
	stale   int // of dead: members of processes found dead
}

// groupTargets buckets members by queue key, skipping invalid, detached and stale ones.
func (r *Redis) groupTargets(group string, members []string) groupTargets {
	members = r.skipInvalidMembers(group, members)
	g := groupTargets{members: len(members)}
	if len(members) == 0 {
		return g
	}
	index := make(map[string]int)
	var deadPIDs map[string]bool
	if r.live != nil {
		if v, anyDead := r.live.verdicts(group, members); anyDead {
			deadPIDs = v
		}
	}
	for _, ch := range members {
		if r.detachedOwn(ch) {
			g.dead = append(g.dead, ch)
			continue
		}
		if deadPIDs != nil && deadPIDs[goProcessID(ch)] {
			g.dead = append(g.dead, ch) // its Go process stopped refreshing its liveness key
			g.stale++
			continue
		}
		nl := nonLocal(ch)
		key := r.prefix + nl
		i, ok := index[key]
		if !ok {
			i = len(g.buckets)
			index[key] = i
			g.buckets = append(g.buckets, &groupBucket{key: key, host: shardIndex(nl, len(r.hosts)),
				capacity: capacityFor(ch, r.patterns, r.capacity)})
		}
		g.buckets[i].channels = append(g.buckets[i].channels, ch)
	}
	return g
}

// groupPairs pre-encodes msg's own pairs once (msgpack); each key's copy adds its list.
func (r *Redis) groupPairs(group string, msg canal.Message) ([]byte, error) {
	var pairs []byte
	if r.json {
		return nil, nil
	}
	var err error
	for k, v := range msg {
		if pairs, err = appendString(pairs, k); err == nil {
			pairs, err = appendValue(pairs, v, 1)
		}
		if err != nil {
			return nil, fmt.Errorf("layers: group send to %q: %w: %w (key %q)", group, canal.ErrInvalidMessage, err, k)
		}
	}
	return pairs, nil
}

// groupDeliver adds body(b) to each bucket's queue key, one script per host (but
// host skip, which the caller has served), skipping full keys.
func (r *Redis) groupDeliver(ctx context.Context, group string, g groupTargets, skip int, score float64, sec int64,
	body func(*groupBucket) ([]byte, error)) error {
	expiry := strconv.FormatInt(r.expirySec, 10)
	cutoff := strconv.FormatInt(sec-r.expirySec, 10)
	var errs []error
	for hi, h := range r.hosts {
		if hi == skip && !r.cluster {
			continue
		}
		var keys, bodies, caps []string
		for _, b := range g.buckets {
			if b.host != hi && !r.cluster {
				continue
			}
			p, err := body(b)
			if err != nil {
				return fmt.Errorf("layers: group send to %q: %w: %w", group, canal.ErrInvalidMessage, err)
			}
			keys = append(keys, b.key)
			bodies = append(bodies, rueidis.BinaryString(p))
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
			err = redisconn.Retry(ctx, func() (err error) {
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
		r.countFull(group, full, g.members)
	}
	return errors.Join(errs...)
}

// countFull counts and logs queue keys a group send skipped because they were full.
func (r *Redis) countFull(group string, full int64, members int) {
	if full > 0 {
		r.groupFull.Add(uint64(full))
		r.log.Info("layers: redis: group send skipped full channels",
			"group", group, "full_keys", full, "members", members)
	}
}

// pruneGroup removes g's dead members from the group: detached channels of this
// process never leave on their own, nor do those of dead processes.
func (r *Redis) pruneGroup(ctx context.Context, gh int, gkey string, g groupTargets) {
	if len(g.dead) == 0 {
		return
	}
	c := r.hosts[gh].client
	if c.Do(ctx, c.B().Zrem().Key(gkey).Member(g.dead...).Build()).Error() == nil && g.stale > 0 {
		r.staleMembers.Add(uint64(g.stale))
	}
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
			case redisconn.Stale(err) && attempt < redisconn.MaxStaleRetries && ctx.Err() == nil:
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
