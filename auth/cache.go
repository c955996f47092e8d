package auth

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/canal-rt/canal"
)

// CacheOptions configure [Cache]. TTL is required.
type CacheOptions struct {
	// TTL is how long a user found by the verifier is reused without asking it again:
	// more than zero, at most [MaxCacheTTL].
	TTL time.Duration
	// InvalidTTL is how long a credential that identifies nobody ([ErrInvalid]) is
	// answered from the cache; zero means such answers are not cached. At most TTL.
	InvalidTTL time.Duration
	// MaxEntries bounds the cache; zero means 10,000. When full, the least recently
	// used entry makes room.
	MaxEntries int
}

// MaxCacheTTL is the longest TTL [Cache] accepts: a revoked credential stays usable
// for up to TTL, so the window stays short.
const MaxCacheTTL = 5 * time.Minute

const defaultCacheEntries = 10_000

// Cache returns a [Verifier] that remembers v's answers for a short time, for
// verifiers that cost a request each (such as [Django]) and clients that reconnect
// often.
//
// Revocation: a user found for a credential is reused for up to TTL without asking v,
// so a credential revoked on the site (a logout, a deleted DRF token, a deactivated or
// deleted user, a changed password) is still accepted for up to TTL after the
// revocation, by any connection that presents it in that time. Likewise a credential
// remembered as invalid stays refused for up to InvalidTTL after it becomes valid.
// Connections already open are not affected either way: credentials are checked at
// the handshake.
//
// Only two outcomes are remembered: a user, and (with InvalidTTL) [ErrInvalid]. Any
// other error, [canal.ErrUnavailable] among them, is passed on and the next call asks
// v again. Concurrent calls with the same credential while none is remembered share one
// call of v, run on a goroutine of its own: the callers may have different deadlines,
// so v's context ends when the last of them gives up (its values are the first
// caller's), and the goroutine ends when v returns. A caller that gives up gets an
// error wrapping [canal.ErrUnavailable] and its context's error.
//
// The cache is keyed by the credential's SHA-256, and holds neither credentials nor
// anything that would let one be recovered. It holds at most MaxEntries entries;
// expired entries are dropped when looked up or when the least recently used make
// room. Each caller gets its own copy of the user's Attrs map (the values inside are
// shared: treat them as read-only).
func Cache(v Verifier, opts CacheOptions) (Verifier, error) {
	c, err := newCache(v, opts)
	if err != nil {
		return nil, err
	}
	return c.get, nil
}

func newCache(v Verifier, opts CacheOptions) (*cache, error) {
	if v == nil {
		return nil, errors.New("auth: Cache: nil verifier")
	}
	if opts.TTL <= 0 || opts.TTL > MaxCacheTTL {
		return nil, fmt.Errorf("auth: Cache: TTL %v: want more than 0 and at most %v", opts.TTL, MaxCacheTTL)
	}
	if opts.InvalidTTL < 0 || opts.InvalidTTL > opts.TTL {
		return nil, fmt.Errorf("auth: Cache: InvalidTTL %v: want 0 (not cached) up to TTL (%v)", opts.InvalidTTL, opts.TTL)
	}
	if opts.MaxEntries < 0 {
		return nil, fmt.Errorf("auth: Cache: negative MaxEntries %d", opts.MaxEntries)
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = defaultCacheEntries
	}
	return &cache{
		verify:  v,
		opts:    opts,
		entries: make(map[[sha256.Size]byte]*list.Element),
		calls:   make(map[[sha256.Size]byte]*call),
		lru:     list.New(),
	}, nil
}

type cache struct {
	verify Verifier
	opts   CacheOptions

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element // of *entry, most recently used at the front
	lru     *list.List
	calls   map[[sha256.Size]byte]*call // lookups in flight
}

type entry struct {
	key     [sha256.Size]byte
	user    canal.User
	err     error // nil or an ErrInvalid
	expires time.Time
}

// call is one lookup of v shared by the callers that wait for it.
type call struct {
	done    chan struct{} // closed once user and err are set
	user    canal.User
	err     error
	waiters int                // callers still waiting; the last to leave cancels
	cancel  context.CancelFunc // ends the lookup's context
}

func (c *cache) get(ctx context.Context, credential string) (canal.User, error) {
	key := sha256.Sum256([]byte(credential))
	now := time.Now()
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*entry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			return e.result()
		}
		c.remove(el)
	}
	cl, ok := c.calls[key]
	if !ok {
		// The lookup outlives the caller that started it if others wait for it too; it
		// keeps that caller's values (trace ids) but not its cancellation.
		lookupCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cl = &call{done: make(chan struct{}), cancel: cancel}
		c.calls[key] = cl
		go c.lookup(lookupCtx, key, credential, cl)
	}
	cl.waiters++
	c.mu.Unlock()

	select {
	case <-cl.done:
		return copyUser(cl.user), cl.err
	case <-ctx.Done():
		c.mu.Lock()
		cl.waiters--
		if cl.waiters == 0 {
			// Nobody waits any more: end the lookup, and let the next caller start
			// a fresh one rather than join one that is being cut short.
			cl.cancel()
			if c.calls[key] == cl {
				delete(c.calls, key)
			}
		}
		c.mu.Unlock()
		return canal.User{}, fmt.Errorf("auth: Cache: %w: %w", canal.ErrUnavailable, ctx.Err())
	}
}

func (c *cache) lookup(ctx context.Context, key [sha256.Size]byte, credential string, cl *call) {
	defer cl.cancel()
	u, err := c.verify(ctx, credential)
	cl.user, cl.err = u, err

	var ttl time.Duration
	switch {
	case err == nil && u.Authenticated():
		ttl = c.opts.TTL
	case errors.Is(err, ErrInvalid):
		ttl = c.opts.InvalidTTL
	}
	c.mu.Lock()
	if c.calls[key] == cl {
		delete(c.calls, key)
	}
	// A lookup whose callers all left may have been cut short: its answer is not kept.
	if ttl > 0 && ctx.Err() == nil {
		c.add(&entry{key: key, user: u, err: err, expires: time.Now().Add(ttl)})
	}
	c.mu.Unlock()
	close(cl.done)
}

// add stores e, evicting the least recently used entry when full. c.mu is held.
func (c *cache) add(e *entry) {
	if el, ok := c.entries[e.key]; ok {
		c.remove(el)
	}
	for c.lru.Len() >= c.opts.MaxEntries {
		c.remove(c.lru.Back())
	}
	c.entries[e.key] = c.lru.PushFront(e)
}

// remove drops an entry. c.mu is held.
func (c *cache) remove(el *list.Element) {
	c.lru.Remove(el)
	delete(c.entries, el.Value.(*entry).key)
}

func (e *entry) result() (canal.User, error) {
	return copyUser(e.user), e.err
}

// copyUser gives each caller its own Attrs map, so that one connection's changes to its
// scope's user do not show in another's.
func copyUser(u canal.User) canal.User {
	if u.Attrs != nil {
		u.Attrs = maps.Clone(u.Attrs)
	}
	return u
}
