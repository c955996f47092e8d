package layers

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
)

const (
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

type redisHost struct {
	name   string // the URL without its password, for logs
	client rueidis.Client
}

type redisListener struct {
	deliver  func(canal.Message) bool
	detached atomic.Bool
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
