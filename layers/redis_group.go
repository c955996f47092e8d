package layers

import (
	"context"
	"time"

	"github.com/canal-rt/canal/internal/redisconn"
)

// GroupAdd adds channel to group, or refreshes its join time: ZADD and EXPIRE.
func (r *Redis) GroupAdd(ctx context.Context, group, channel string) error {
	if err := r.beginMember(ctx, "group add", group, channel); err != nil {
		return err
	}
	if r.detachedOwn(channel) {
		return nil
	}
	h := r.hosts[shardIndex(group, len(r.hosts))]
	key := r.prefix + ":group:" + group
	score, _ := redisNow()
	c := h.client
	err := redisconn.Retry(ctx, func() error {
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
		r.remember(channel, group)
		if r.live != nil {
			r.live.joined(group)
		}
	}
	return nil
}

// GroupDiscard removes channel from group (ZREM); silent when absent.
func (r *Redis) GroupDiscard(ctx context.Context, group, channel string) error {
	if err := r.beginMember(ctx, "group discard", group, channel); err != nil {
		return err
	}
	r.forget(channel, group)
	h := r.hosts[shardIndex(group, len(r.hosts))]
	c := h.client
	err := redisconn.Retry(ctx, func() error {
		return c.Do(ctx, c.B().Zrem().Key(r.prefix+":group:"+group).Member(channel).Build()).Error()
	})
	if err != nil {
		return r.fail("group discard", err)
	}
	return nil
}

// memberships remembers which groups this process's own channels joined, so the layer
// can add them again when Redis comes back from an outage without its data: the
// sockets are still open, and without this they would silently stop getting their
// groups' messages until they reconnect. channels_redis has no such repair.
//
// One flat set of (group, channel) pairs: a join or a leave is one map operation and
// allocates nothing, where a map per group would cost one for each new group (and
// every user's own group is new). Only rejoin, after an outage, groups them.
//
// Concurrency: guarded by Redis.gmu.
type memberships map[membership]struct{}

// membership is one own channel in one group.
type membership struct{ group, channel string }

// remember records channel (one of this process's) in groups.
func (r *Redis) remember(channel string, groups ...string) {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	for _, g := range groups {
		r.members[membership{g, channel}] = struct{}{}
	}
}

// forget drops channel from groups.
func (r *Redis) forget(channel string, groups ...string) {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	for _, g := range groups {
		delete(r.members, membership{g, channel})
	}
}

// rejoinTimeout bounds one round of re-adding memberships after an outage.
const rejoinTimeout = 30 * time.Second

// rejoin adds this process's remembered members on host h back to their groups, with
// a fresh join time. Channels that no longer exist (detached listeners, dropped
// buffers) are forgotten instead. Runs on its own goroutine, never on a receive loop.
func (r *Redis) rejoin(h int) {
	defer r.wg.Done()
	defer r.rejoining.Store(false)
	ctx, cancel := context.WithTimeout(r.ctx, rejoinTimeout)
	defer cancel()
	type job struct {
		group    string
		channels []string
	}
	var jobs []job
	index := map[string]int{} // group → its job
	r.gmu.Lock()
	for m := range r.members {
		if !r.cluster && shardIndex(m.group, len(r.hosts)) != h {
			continue
		}
		if r.channelGone(m.channel) {
			delete(r.members, m)
			continue
		}
		i, ok := index[m.group]
		if !ok {
			i = len(jobs)
			index[m.group] = i
			jobs = append(jobs, job{group: m.group})
		}
		jobs[i].channels = append(jobs[i].channels, m.channel)
	}
	r.gmu.Unlock()
	if len(jobs) == 0 {
		return
	}
	c := r.hosts[h].client
	score, _ := redisNow()
	added := 0
	for _, j := range jobs {
		key := r.prefix + ":group:" + j.group
		zadd := c.B().Zadd().Key(key).ScoreMember()
		for _, ch := range j.channels {
			zadd = zadd.ScoreMember(score, ch)
		}
		for _, res := range c.DoMulti(ctx, zadd.Build(), c.B().Expire().Key(key).Seconds(r.groupExpiry).Build()) {
			if err := res.Error(); err != nil {
				r.log.Warn("layers: redis: could not restore group memberships after an outage", "group", j.group, "err", err)
				return // the next recovery tries again
			}
		}
		added += len(j.channels)
	}
	r.log.Info("layers: redis: restored group memberships after an outage", "groups", len(jobs), "members", added)
}

// channelGone reports whether an own channel no longer exists in this process.
func (r *Redis) channelGone(ch string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if l, ok := r.listeners[ch]; ok {
		return l.detached.Load()
	}
	_, ok := r.buffers[ch]
	return !ok
}
