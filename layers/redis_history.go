package layers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/redisconn"
)

// Group history in Redis (RedisOptions.History).
//
// Keys, next to channels_redis' own (Django's flush deletes them with the rest):
//   - "<prefix>:history:{<group>}:meta", a hash: s, the group's last offset; e, its epoch.
//   - "<prefix>:history:{<group>}", a stream: entry "<offset>-0" holds the message
//     (d: the layer's codec, without random prefix or __asgi_channel__) and its time
//     (t: Redis' clock, ms). MAXLEN Size; expires TTL after the last message, and
//     entries older than TTL are trimmed and never returned.
//
// The braces keep both keys in one Cluster slot; the group and queue keys keep their
// channels_redis names. With several Hosts, both live on the group's host.
//
// Publishing is one script (scripts/publish.lua, run the same by Django's
// django_canal.history.publish): it checks that the caller's expected position and
// group members are still current, increments the offset, appends the entry and adds
// the caller's copies (each already carrying its position under canal.PositionKey) to
// the members' queue keys, exactly as channels_redis' group_send does. The caller
// encodes the copies, so the position has to be known before the script runs (the
// copies may be encrypted): when another publisher got there first, the script
// changes nothing and returns the current position, and the caller encodes again. In
// one process, publishers of one group wait for each other instead (publishLocks).
//
// What is atomic: on one server (or Sentinel), the member check, the offset, the
// history entry and the live copies, so every message is either in a subscriber's
// live stream or in the history it reads after subscribing, and live copies arrive
// in offset order. With several Hosts, members' queue keys on other hosts get their
// copies after the script; in Cluster mode all of them do, and the member check is
// skipped (the group key is in another slot). There a subscriber may miss a live
// message; the next one's offset shows the gap, and history.Recovery reads it back.

// publishAttempts bounds Publish's tries against other processes' publishers.
const publishAttempts = 64

// positionCacheSize bounds the groups whose last position a layer remembers.
const positionCacheSize = 4096

// historyRule returns the rule of group, or nil: the hook of GroupSend.
func (b *redisBase) historyRule(group string) *HistoryRule { return b.history.rule(group) }

// historyKeys returns group's history keys.
func (b *redisBase) historyKeys(group string) (meta, stream string) {
	stream = b.prefix + ":history:{" + group + "}"
	return stream + ":meta", stream
}

// historyEntry encodes msg as a history entry: the layer's codec, no random prefix.
func (b *redisBase) historyEntry(msg canal.Message) ([]byte, error) {
	p, err := b.marshal(nil, msg, "", nil)
	if err != nil {
		return nil, err
	}
	return b.seal(p, 0), nil
}

// Publish sends msg to group's members as GroupSend does and appends it to the
// group's history, returning its position; every member's copy carries it under
// canal.PositionKey. A group no History rule names: canal.ErrNoHistory. See
// canal.HistoryLayer.
func (r *Redis) Publish(ctx context.Context, group string, msg canal.Message) (canal.Position, error) {
	if err := checkPublish(group, msg); err != nil {
		return canal.Position{}, err
	}
	if err := r.begin(ctx); err != nil {
		return canal.Position{}, err
	}
	rule := r.historyRule(group)
	if rule == nil {
		return canal.Position{}, errNoHistory("publish to", group)
	}
	return r.publish(ctx, group, msg, rule)
}

// publish runs the publish script until it takes: see the top of this file.
func (r *Redis) publish(ctx context.Context, group string, msg canal.Message, rule *HistoryRule) (canal.Position, error) {
	entry, err := r.historyEntry(msg)
	if err != nil {
		return canal.Position{}, fmt.Errorf("layers: publish to %q: %w: %w", group, canal.ErrInvalidMessage, err)
	}
	lock := r.publishing.of(group)
	lock.Lock()
	defer lock.Unlock()

	gh := shardIndex(group, len(r.hosts))
	gkey := r.prefix + ":group:" + group
	meta, stream := r.historyKeys(group)
	c := r.hosts[gh].client
	check := !r.cluster
	expected := r.publishing.last(group)
	var members []string
	var g groupTargets
	readMembers := true
	for attempt := 1; ; attempt++ {
		if attempt > publishAttempts {
			return canal.Position{}, fmt.Errorf("layers: publish to %q: gave up after %d attempts: other publishers kept changing the group or its position", group, publishAttempts)
		}
		if attempt > 3 { // contention with other processes: back off a little, randomly
			t := time.NewTimer(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond))))
			select {
			case <-ctx.Done():
				t.Stop()
				return canal.Position{}, ctx.Err()
			case <-t.C:
			}
		}
		score, sec := redisNow()
		if readMembers {
			if members, err = r.groupMembers(ctx, gh, gkey, sec); err != nil {
				return canal.Position{}, r.fail("publish", err)
			}
			g = r.groupTargets(group, members)
			readMembers = false
		}
		next := canal.Position{Offset: expected.Offset + 1, Epoch: expected.Epoch}
		out := canal.WithPosition(msg, group, next)
		pairs, err := r.groupPairs(group, out)
		if err != nil {
			return canal.Position{}, err
		}
		body := func(b *groupBucket) ([]byte, error) { return r.groupMember(out, len(out), pairs, b.channels) }

		keys := []string{meta, stream}
		if check {
			keys = append(keys, gkey)
		}
		var bodies, caps []string
		if !r.cluster {
			for _, b := range g.buckets {
				if b.host != gh {
					continue
				}
				p, err := body(b)
				if err != nil {
					return canal.Position{}, fmt.Errorf("layers: publish to %q: %w: %w", group, canal.ErrInvalidMessage, err)
				}
				keys = append(keys, b.key)
				bodies = append(bodies, rueidis.BinaryString(p))
				caps = append(caps, strconv.Itoa(b.capacity))
			}
		}
		flag := "0"
		if check {
			flag = "1"
		}
		args := make([]string, 0, 13+len(members)+2*len(bodies))
		args = append(args, strconv.FormatUint(expected.Offset, 10), expected.Epoch, randomHex(8),
			rueidis.BinaryString(entry), strconv.Itoa(rule.Size), ceilSeconds(rule.TTL), ceilSeconds(rule.metaTTL()),
			flag, strconv.FormatInt(sec-r.groupExpiry, 10), strconv.Itoa(len(members)))
		args = append(args, members...)
		args = append(args, bodies...)
		args = append(args, caps...)
		args = append(args, formatScore(score), strconv.FormatInt(r.expirySec, 10), strconv.FormatInt(sec-r.expirySec, 10))

		var reply []rueidis.RedisMessage
		err = redisconn.Retry(ctx, func() (err error) {
			reply, err = publishScript.Exec(ctx, c, keys, args).ToArray()
			return err
		})
		if err != nil {
			return canal.Position{}, r.fail("publish to "+strconv.Quote(group), err)
		}
		status, pos, err := parseScriptPosition(reply)
		if err != nil {
			return canal.Position{}, fmt.Errorf("layers: publish to %q: unexpected script reply: %w", group, err)
		}
		switch status {
		case 1:
			r.publishing.remember(group, pos)
			if len(reply) > 3 {
				if full, err := reply[3].AsInt64(); err == nil {
					r.countFull(group, full, g.members)
				}
			}
			err := r.groupDeliver(ctx, group, g, gh, score, sec, body) // other hosts; Cluster: all
			r.pruneGroup(ctx, gh, gkey, g)
			return pos, err
		case 0: // another publisher went first, or the history had expired: a new epoch
			expected = pos
		default: // the members changed since we read them
			readMembers = true
		}
	}
}

// History returns group's messages after since (see canal.HistoryLayer): at most
// limit, and never more than 1,000 at once (limit <= 0: up to 1,000).
func (r *Redis) History(ctx context.Context, group string, since canal.Position, limit int) ([]canal.Message, canal.Position, error) {
	if err := ValidGroupName(group); err != nil {
		return nil, canal.Position{}, fmt.Errorf("layers: history: %w", err)
	}
	if err := r.begin(ctx); err != nil {
		return nil, canal.Position{}, err
	}
	rule := r.historyRule(group)
	if rule == nil {
		return nil, canal.Position{}, errNoHistory("history of", group)
	}
	if limit <= 0 || limit > historyPage {
		limit = historyPage
	}
	meta, stream := r.historyKeys(group)
	c := r.hosts[shardIndex(group, len(r.hosts))].client
	args := []string{strconv.FormatUint(since.Offset, 10), since.Epoch, randomHex(8), strconv.Itoa(limit),
		ceilSeconds(rule.TTL), ceilSeconds(rule.metaTTL())}
	var reply []rueidis.RedisMessage
	err := redisconn.Retry(ctx, func() (err error) {
		reply, err = historyScript.Exec(ctx, c, []string{meta, stream}, args).ToArray()
		return err
	})
	if err != nil {
		return nil, canal.Position{}, r.fail("history of "+strconv.Quote(group), err)
	}
	status, head, err := parseScriptPosition(reply)
	if err != nil || len(reply)%2 != 1 {
		return nil, canal.Position{}, fmt.Errorf("layers: history of %q: unexpected script reply: %v", group, err)
	}
	if status != 1 {
		return nil, head, errNotRecovered(group, since)
	}
	msgs := make([]canal.Message, 0, (len(reply)-3)/2)
	for i := 3; i+1 < len(reply); i += 2 {
		id, err1 := reply[i].ToString()
		d, err2 := reply[i+1].ToString()
		off, err3 := strconv.ParseUint(strings.TrimSuffix(id, "-0"), 10, 64)
		var msg canal.Message
		var err4 error
		if err1 == nil && err2 == nil && err3 == nil {
			msg, err4 = r.unmarshal([]byte(d), 0)
		}
		if err := cmpErr(err1, err2, err3, err4); err != nil {
			// A message that cannot be read is lost for the client: it must reload.
			r.malformed.report(r.log, "layers: redis: history entry skipped: could not be read", "group", group, len(d), err)
			return nil, head, fmt.Errorf("%w (an entry could not be read: %v)", errNotRecovered(group, since), err)
		}
		msgs = append(msgs, canal.WithPosition(msg, group, canal.Position{Offset: off, Epoch: head.Epoch}))
	}
	return msgs, head, nil
}

// parseScriptPosition reads {status, offset, epoch, ...}.
func parseScriptPosition(reply []rueidis.RedisMessage) (int64, canal.Position, error) {
	if len(reply) < 3 {
		return 0, canal.Position{}, fmt.Errorf("%d elements", len(reply))
	}
	status, err1 := reply[0].AsInt64()
	s, err2 := reply[1].ToString()
	if err2 != nil { // Lua numbers arrive as integers
		var n int64
		n, err2 = reply[1].AsInt64()
		s = strconv.FormatInt(n, 10)
	}
	e, err3 := reply[2].ToString()
	off, err4 := strconv.ParseUint(s, 10, 64)
	if err := cmpErr(err1, err2, err3, err4); err != nil {
		return 0, canal.Position{}, err
	}
	return status, canal.Position{Offset: off, Epoch: e}, nil
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ceilSeconds is d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

var (
	publishScript = rueidis.NewLuaScript(publishLua)
	historyScript = rueidis.NewLuaScript(historyLua)
)

// last returns the last position this process saw for group (zero if none).
func (p *publishLocks) last(group string) canal.Position {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return p.positions[group]
}

// remember records group's last position; the cache is bounded (cleared when full:
// a forgotten position costs one extra script run).
func (p *publishLocks) remember(group string, pos canal.Position) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	if p.positions == nil || len(p.positions) >= positionCacheSize {
		p.positions = make(map[string]canal.Position)
	}
	p.positions[group] = pos
}
