package layers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/redisconn"
)

// The scripts of Receive on a normal channel: each runs atomically on its host.
var (
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
)

// redisPoller pops one normal channel's key for the receivers waiting on it.
type redisPoller struct {
	key     string
	waiters []chan redisRecv // FIFO; each buffered 1 and sent to once
}

type redisRecv struct {
	msg canal.Message
	err error
}

// Receive returns the next message of channel: a process-local channel of this layer
// (from NewChannel) or a normal channel.
func (r *Redis) Receive(ctx context.Context, channel string) (canal.Message, error) {
	if err := r.beginReceive(ctx, channel); err != nil {
		return nil, err
	}
	if strings.IndexByte(channel, '!') < 0 {
		return r.receiveNormal(ctx, channel)
	}
	switch {
	case !r.ownChannel(channel):
		return nil, fmt.Errorf("layers: receive: %w: %q is another process's channel", canal.ErrInvalidName, channel)
	case r.isAttachName(channel):
		return nil, errReceiveAttach(channel)
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
	return q.pop(ctx, r.localNow, r.expiry, r.done)
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
	q := r.newQueue(channel)
	r.buffers[channel] = q
	return q
}

func (r *Redis) sweepLocked(now time.Duration) {
	if now-r.lastSweep < r.expiry {
		return
	}
	r.lastSweep = now
	for name, q := range r.buffers {
		q.mu.Lock()
		q.prune(now, r.expiry)
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
			r.reportMalformed("key", p.key, len(member), err)
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
	err := redisconn.Retry(r.ctx, func() error {
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
