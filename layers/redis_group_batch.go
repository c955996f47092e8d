package layers

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/redisconn"
)

var _ canal.GroupBatcher = (*Redis)(nil)

// GroupAddMany adds channel to every group (ZADD and EXPIRE each, as GroupAdd does)
// in one pipelined round trip per host: a connection's groups cost its handshake one
// wait on Redis, however many there are. In Cluster mode the client splits the
// pipeline by slot. On error some groups may have been joined; a failed host's
// groups are not remembered for repair.
func (r *Redis) GroupAddMany(ctx context.Context, groups []string, channel string) error {
	if len(groups) == 1 {
		return r.GroupAdd(ctx, groups[0], channel)
	}
	if err := r.beginMany(ctx, "group add", groups, channel); err != nil {
		return err
	}
	if len(groups) == 0 || r.detachedOwn(channel) {
		return nil
	}
	score, _ := redisNow()
	err := r.eachHost(ctx, groups, func(c rueidis.Client, cmds rueidis.Commands, key string) rueidis.Commands {
		return append(cmds,
			c.B().Zadd().Key(key).ScoreMember().ScoreMember(score, channel).Build(),
			c.B().Expire().Key(key).Seconds(r.groupExpiry).Build())
	}, func(batch []string) {
		if !r.ownChannel(channel) {
			return
		}
		r.remember(channel, batch...)
		if r.live != nil {
			for _, g := range batch {
				r.live.joined(g)
			}
		}
	})
	if err != nil {
		return r.fail("group add", err)
	}
	return nil
}

// GroupDiscardMany removes channel from every group (ZREM each) in one pipelined
// round trip per host.
func (r *Redis) GroupDiscardMany(ctx context.Context, groups []string, channel string) error {
	if len(groups) == 1 {
		return r.GroupDiscard(ctx, groups[0], channel)
	}
	if err := r.beginMany(ctx, "group discard", groups, channel); err != nil {
		return err
	}
	r.forget(channel, groups...)
	err := r.eachHost(ctx, groups, func(c rueidis.Client, cmds rueidis.Commands, key string) rueidis.Commands {
		return append(cmds, c.B().Zrem().Key(key).Member(channel).Build())
	}, nil)
	if err != nil {
		return r.fail("group discard", err)
	}
	return nil
}

// beginMany is beginMember for several groups: the channel is checked once.
func (r *Redis) beginMany(ctx context.Context, op string, groups []string, channel string) error {
	if err := ValidChannelName(channel); err != nil {
		return fmt.Errorf("layers: %s: %w", op, err)
	}
	for _, g := range groups {
		if err := ValidGroupName(g); err != nil {
			return fmt.Errorf("layers: %s: %w", op, err)
		}
	}
	return r.begin(ctx)
}

// eachHost sends, for every host that holds some of groups, the commands build makes
// for each of its groups' keys, in one DoMulti, retried on stale connections (the
// commands are rebuilt: rueidis recycles them once sent). done, if set, gets each
// host's groups once its commands all succeeded. The first error stops it.
func (r *Redis) eachHost(ctx context.Context, groups []string,
	build func(c rueidis.Client, cmds rueidis.Commands, key string) rueidis.Commands, done func([]string)) error {
	byHost := [][]string{groups} // one host (or a cluster client): all of them at once
	if len(r.hosts) > 1 {
		byHost = make([][]string, len(r.hosts))
		for _, g := range groups {
			i := shardIndex(g, len(r.hosts))
			byHost[i] = append(byHost[i], g)
		}
	}
	for i, batch := range byHost {
		if len(batch) == 0 {
			continue
		}
		c := r.hosts[i].client
		err := redisconn.Retry(ctx, func() error {
			cmds := make(rueidis.Commands, 0, 2*len(batch))
			for _, g := range batch {
				cmds = build(c, cmds, r.prefix+":group:"+g)
			}
			for _, res := range c.DoMulti(ctx, cmds...) {
				if err := res.Error(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if done != nil {
			done(batch)
		}
	}
	return nil
}
