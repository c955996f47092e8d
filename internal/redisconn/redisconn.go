// Package redisconn is how canal's Redis users (the channel layers and the ticket
// store) turn an address into a client and keep commands going over connections that
// died while idle: one URL syntax, one redaction of passwords, one error for an
// unreachable server, one retry rule.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
)

// DefaultURL is the server used when no address is given, as in channels_redis.
const DefaultURL = "redis://localhost:6379"

// Redact returns u without its password, for logs and errors.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// ParseURL reads a server's URL (redis://[:password@]host:port/db, rediss://…,
// unix://…) into client options for that one server, with no client-side caching.
// The error never contains the password.
func ParseURL(u string) (rueidis.ClientOption, error) {
	opt, err := rueidis.ParseURL(u)
	if err != nil {
		// url.Parse's errors quote the URL, password included.
		name := Redact(u)
		return opt, fmt.Errorf("bad URL %s: %s", name, strings.ReplaceAll(err.Error(), u, name))
	}
	opt.DisableCache = true
	opt.ForceSingleClient = true
	return opt, nil
}

// DialURL connects to the server at u (DefaultURL when empty) and pings it; hook,
// when set, may change the options first. It returns the client and the URL without
// its password, to name the server in logs.
func DialURL(ctx context.Context, u string, hook func(*rueidis.ClientOption)) (rueidis.Client, string, error) {
	if u == "" {
		u = DefaultURL
	}
	name := Redact(u)
	opt, err := ParseURL(u)
	if err != nil {
		return nil, name, err
	}
	c, err := Dial(ctx, name, opt, hook, nil)
	return c, name, err
}

// FlushDelay is the rueidis MaxFlushDelay every client made here starts with: the
// most a connection's writer waits, while other commands are in flight, for more
// commands to share its next write. A handshake sends several small commands (the
// ticket's GETDEL, ZADD and EXPIRE per group joined, ZREM per group when it ends);
// without the wait most of them cost a write system call of their own, on loopback
// about as costly as the rest of the command. Sequential use (one command in flight)
// is never delayed. A ClientOptions hook may set MaxFlushDelay to 0 to turn it off.
//
// Chosen by measurement (W1 handshakes, 64 in flight, server on one core, Redis reads
// per handshake = writes that reached Redis): 0 µs: 2.2 reads, 129-159 µs server CPU
// per handshake; 20 µs: 1.7-2.0, 126-149 µs; 50 µs: 1.0, 97-119 µs; 100 µs: 0.6-0.75,
// 111-117 µs; 200 µs: 0.5, 111-117 µs. Past 50 µs the CPU saving levels off. The
// cost: under load a command waits at most this long; on an idle process Go's timers
// round a sub-millisecond sleep up to about 1 ms, so a command that does wait (one
// overlapping another) may take 1 ms longer: handshake p50 with one client at a time
// 0.4-0.5 ms at 0 and 20 µs, 0.6-1.5 ms at 50 µs and above. Blocking commands
// (BZPOPMIN, on their own connections) never wait.
const FlushDelay = 100 * time.Microsecond

// Dial makes the client for opt (after hook), runs check on it, if any, and pings the
// server. Connection failures wrap canal.ErrUnavailable; name, free of passwords,
// identifies the server in errors. Options without MaxFlushDelay get FlushDelay
// before hook runs.
func Dial(ctx context.Context, name string, opt rueidis.ClientOption, hook func(*rueidis.ClientOption),
	check func(rueidis.Client) error) (rueidis.Client, error) {
	if opt.MaxFlushDelay == 0 {
		opt.MaxFlushDelay = FlushDelay
	}
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
	return c, nil
}

// MaxStaleRetries bounds the immediate retries of a command that failed on a
// connection that had died while idle. After Redis restarts or fails over, each pooled
// connection that saw the old server die fails its next command once (EOF, reset) and
// is then replaced; without retries every caller would fail its first few commands
// after each blip. Errors that do not prove a stale connection (dial errors, timeouts)
// are not retried, so a Redis that is really down still fails fast.
const MaxStaleRetries = 4

// Stale reports whether err shows that a pooled connection had died before use.
func Stale(err error) bool {
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

// Retry runs f again, at most MaxStaleRetries times, while it fails on connections
// that died while idle and ctx is not done.
func Retry(ctx context.Context, f func() error) error {
	err := f()
	for i := 0; Stale(err) && i < MaxStaleRetries && ctx.Err() == nil; i++ {
		err = f()
	}
	return err
}
