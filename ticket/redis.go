package ticket

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/redisconn"
	"github.com/redis/rueidis"
)

// RedisOptions configures NewRedis and DialRedis. The zero value matches the Django
// package's defaults.
type RedisOptions struct {
	// Prefix is prepended to the hash of a ticket to form its key (DefaultPrefix when
	// empty). It must match the Django side's setting.
	Prefix string
	// DefaultTTL is the lifetime of a ticket issued with ttl <= 0 (DefaultTTL when 0).
	DefaultTTL time.Duration
	// DisableGETDEL makes Consume use a Lua script (GET then DEL, atomic on the server)
	// instead of GETDEL, for servers older than Redis 6.2 and proxies that lack GETDEL.
	// It is rarely needed: Consume switches to the script by itself the first time the
	// server answers GETDEL with "unknown command".
	DisableGETDEL bool
	// ClientOptions, when set, may change the client's rueidis options (timeouts, TLS,
	// pool sizes) before DialRedis connects, as in layers.RedisOptions. NewRedis,
	// which is handed a client, ignores it. DialRedis's client starts with a
	// MaxFlushDelay of 100 µs, which lets concurrent handshakes' GETDELs share a write
	// (set it to 0 here to turn that off).
	ClientOptions func(*rueidis.ClientOption)
}

// consumeScript is GETDEL for servers without it. A script runs atomically, so two
// consumers cannot both GET the value before either DELs it.
const consumeScript = `local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v`

// Redis is a Store in Redis, interoperable with the Django package: keys are
// Prefix + Hash(ticket), values are JSON as Encode writes, and expiry is Redis's.
//
// Consume is a single atomic GETDEL, or the equivalent script, so a ticket
// authenticates at most one connection even across many servers. Every Redis failure,
// including a ctx deadline while waiting for Redis, returns an error wrapping
// canal.ErrUnavailable: callers fail closed.
//
// Concurrency: safe for concurrent use. A store from DialRedis owns its client (Close
// closes it); one from NewRedis shares the caller's, which the caller closes.
type Redis struct {
	client     rueidis.Client
	owned      bool // DialRedis made the client
	prefix     string
	defaultTTL time.Duration
	script     *rueidis.Lua
	// useScript is set once the server has refused GETDEL (or by DisableGETDEL) and
	// never cleared: a server does not gain commands under a running process, and an
	// upgrade only costs the script's slightly higher price until restart.
	useScript atomic.Bool
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store that keeps tickets in Redis through client. It does not
// contact Redis: a store can be created while Redis is down.
func NewRedis(client rueidis.Client, opts RedisOptions) (*Redis, error) {
	if client == nil {
		return nil, errors.New("ticket: NewRedis: nil client")
	}
	if opts.DefaultTTL < 0 {
		return nil, errors.New("ticket: NewRedis: negative DefaultTTL")
	}
	s := &Redis{
		client:     client,
		prefix:     opts.Prefix,
		defaultTTL: opts.DefaultTTL,
		script:     rueidis.NewLuaScript(consumeScript),
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.defaultTTL == 0 {
		s.defaultTTL = DefaultTTL
	}
	s.useScript.Store(opts.DisableGETDEL)
	return s, nil
}

// DialRedis connects to the Redis server at url and returns a store that keeps
// tickets there. url takes the form the channel layers' Hosts do (layers.RedisOptions):
// redis://[:password@]host:port/db, rediss://… for TLS, or unix://…; empty means
// "redis://localhost:6379". Like the layers, it pings the server first: a bad URL is
// an error that never shows the password, and a server that cannot be reached within
// ctx gives an error wrapping canal.ErrUnavailable. Close the store to close its
// client.
func DialRedis(ctx context.Context, url string, opts RedisOptions) (*Redis, error) {
	if opts.DefaultTTL < 0 {
		return nil, errors.New("ticket: DialRedis: negative DefaultTTL")
	}
	client, _, err := redisconn.DialURL(ctx, url, opts.ClientOptions)
	if err != nil {
		return nil, fmt.Errorf("ticket: DialRedis: %w", err)
	}
	s, err := NewRedis(client, opts)
	if err != nil {
		client.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// Close closes the client of a store made by DialRedis, whose calls then fail with
// errors wrapping canal.ErrUnavailable. For a store made by NewRedis it does nothing:
// the client is the caller's.
func (s *Redis) Close() {
	if s.owned {
		s.client.Close()
	}
}

// Issue implements Store with one SET key value NX PX ttl: atomic, and never
// overwriting a live ticket. The TTL is sent in milliseconds (rounded up), so
// sub-second lifetimes work; Django's EX seconds are the same thing coarser.
func (s *Redis) Issue(ctx context.Context, u canal.User, ttl time.Duration) (string, error) {
	if err := ctxErr(ctx); err != nil {
		return "", err
	}
	if ttl <= 0 {
		ttl = s.defaultTTL
	}
	ms := int64((ttl + time.Millisecond - 1) / time.Millisecond)
	value, err := Encode(u)
	if err != nil {
		return "", err
	}
	collisions, stale := 0, 0
	for {
		t, err := New()
		if err != nil {
			return "", err
		}
		cmd := s.client.B().Set().Key(s.prefix + Hash(t)).Value(rueidis.BinaryString(value)).
			Nx().PxMilliseconds(ms).Build()
		err = s.client.Do(ctx, cmd).Error()
		switch {
		case err == nil:
			return t, nil
		case rueidis.IsRedisNil(err):
			// NX refused: the key exists. Draw again; 256 random bits colliding
			// repeatedly means the random source is broken.
			if collisions++; collisions == 3 {
				return "", errors.New("ticket: issue: repeated ticket collisions")
			}
		case redisconn.Stale(err) && stale < redisconn.MaxStaleRetries && ctx.Err() == nil:
			// If the lost SET ran, its key expires unused: the retry draws a new ticket.
			stale++
		default:
			return "", unavailable("issue", err)
		}
	}
}

// Consume implements Store. Malformed tickets are refused before any I/O.
func (s *Redis) Consume(ctx context.Context, ticket string) (canal.User, error) {
	if !wellFormed(ticket) {
		return canal.User{}, ErrInvalid
	}
	if err := ctxErr(ctx); err != nil {
		return canal.User{}, err
	}
	key := s.prefix + Hash(ticket)
	b, err := s.getdel(ctx, key)
	for stale := 0; redisconn.Stale(err) && stale < redisconn.MaxStaleRetries && ctx.Err() == nil; stale++ {
		// Retrying cannot authenticate twice: if the lost GETDEL ran, the key is gone
		// and the retry reports ErrInvalid, failing closed.
		b, err = s.getdel(ctx, key)
	}
	switch {
	case rueidis.IsRedisNil(err):
		return canal.User{}, ErrInvalid // absent: unknown, expired or used
	case err != nil:
		return canal.User{}, unavailable("consume", err)
	}
	return Decode(b)
}

// getdel reads and deletes key atomically. The bytes share memory with the reply's
// string and must not be modified.
func (s *Redis) getdel(ctx context.Context, key string) ([]byte, error) {
	if !s.useScript.Load() {
		b, err := s.client.Do(ctx, s.client.B().Getdel().Key(key).Build()).AsBytes()
		if !unknownCommand(err) {
			return b, err
		}
		// An unknown command did nothing, so the script can safely take over.
		s.useScript.Store(true)
	}
	return s.script.Exec(ctx, s.client, []string{key}, nil).AsBytes()
}

// unknownCommand reports whether err is the server refusing a command it does not
// have: "ERR unknown command 'getdel'" (Redis < 6.2, renamed commands, some proxies).
func unknownCommand(err error) bool {
	rerr, ok := rueidis.IsRedisErr(err)
	return ok && strings.Contains(strings.ToLower(rerr.Error()), "unknown command")
}
