package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/redisconn"
)

// Defaults of RedisOptions.
const (
	DefaultPrefix    = "canal:"
	DefaultLiveness  = 30 * time.Second
	DefaultKeyExpiry = 24 * time.Hour
	minLiveness      = 300 * time.Millisecond
	closeTimeout     = 500 * time.Millisecond
)

// RedisOptions configures NewRedis. The zero value is ready to use.
type RedisOptions struct {
	Options
	// Prefix starts every key (DefaultPrefix, "canal:", when empty). Django's
	// CANAL_PRESENCE_PREFIX must match.
	Prefix string
	// Liveness is how long this process's entries outlive it after a crash
	// (DefaultLiveness when 0, at least 300ms): its liveness key is set for that long
	// and refreshed every third of it, and readers skip (and delete) the entries of
	// processes whose key is gone.
	Liveness time.Duration
	// KeyExpiry is the expiry of a group's key, renewed by each join
	// (DefaultKeyExpiry, 24h as channels_redis' group_expiry, when 0): the bound on
	// what a group abandoned by crashed processes and never read again leaves behind.
	KeyExpiry time.Duration
	// Logger receives failures of the liveness key (default slog.Default()).
	Logger *slog.Logger
}

// Redis is a Store in Redis, shared by every process that uses the same client
// address and Prefix (Go servers, and Django reading with django_canal.presence).
// The keys are described in the package documentation.
//
// Concurrency: safe for concurrent use. The client is shared, not owned: Close stops
// the liveness key, not the client.
type Redis struct {
	client  rueidis.Client
	opts    RedisOptions
	process string // 16 hex digits, new per NewRedis
	alive   string // this process's liveness key

	mu    sync.Mutex
	local map[string]map[string]localEntry // group → field → entry: this process's, to restore

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

var _ Store = (*Redis)(nil)

// record is an entry's JSON without "at", which joinScript writes first.
type record struct {
	ID       string         `json:"id"`
	Username string         `json:"username"`
	Claims   map[string]any `json:"claims,omitempty"`
}

// localEntry is what joinScript needs to write an entry again.
type localEntry struct{ uid, value string }

// Lua scripts: each touches one key, the group's, so it is atomic in a Redis Cluster
// too. Entry values start with {"at":<ms>, which joinScript keeps across updates.
var (
	// KEYS[1] group key; ARGV: field, value without its leading {"at":N, part
	// (starting with ','), now in ms, user ID, key expiry in ms. Returns the user's
	// count after the join, 0 for an update.
	joinScript = rueidis.NewLuaScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
local at = ARGV[3]
local n = 0
if old then
  at = string.match(old, '^{"at":(%d+)') or at
  local oid = cjson.decode(old)['id']
  if oid ~= ARGV[4] then
    local c = redis.call('HINCRBY', KEYS[1], '#' .. oid, -1)
    if c <= 0 then redis.call('HDEL', KEYS[1], '#' .. oid) end
    old = false
  end
end
redis.call('HSET', KEYS[1], ARGV[1], '{"at":' .. at .. ARGV[2])
if not old then n = redis.call('HINCRBY', KEYS[1], '#' .. ARGV[4], 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return n`)
	// KEYS[1] group key; ARGV: fields. Removes them and returns, per field, the
	// user's count after it (-1 for a field that was not there).
	leaveScript = rueidis.NewLuaScript(`
local out = {}
for i, f in ipairs(ARGV) do
  local v = redis.call('HGET', KEYS[1], f)
  if v then
    redis.call('HDEL', KEYS[1], f)
    local id = cjson.decode(v)['id']
    local c = redis.call('HINCRBY', KEYS[1], '#' .. id, -1)
    if c <= 0 then redis.call('HDEL', KEYS[1], '#' .. id) end
    out[i] = c
  else
    out[i] = -1
  end
end
return out`)
)

// NewRedis returns a store that keeps presence in Redis through client, and sets its
// liveness key (the one call it makes before returning; an error wraps
// canal.ErrUnavailable). Call Close when the server has stopped.
func NewRedis(ctx context.Context, client rueidis.Client, opts RedisOptions) (*Redis, error) {
	if client == nil {
		return nil, errors.New("presence: NewRedis: nil client")
	}
	switch {
	case opts.Liveness == 0:
		opts.Liveness = DefaultLiveness
	case opts.Liveness < minLiveness:
		return nil, fmt.Errorf("presence: NewRedis: Liveness %v is shorter than %v", opts.Liveness, minLiveness)
	}
	switch {
	case opts.KeyExpiry == 0:
		opts.KeyExpiry = DefaultKeyExpiry
	case opts.KeyExpiry < opts.Liveness:
		return nil, fmt.Errorf("presence: NewRedis: KeyExpiry %v is shorter than Liveness %v", opts.KeyExpiry, opts.Liveness)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	r := &Redis{client: client, opts: opts, process: hex.EncodeToString(id[:]),
		local: make(map[string]map[string]localEntry), stop: make(chan struct{}), done: make(chan struct{})}
	r.alive = opts.Prefix + "presence.alive:" + r.process
	if _, err := r.beat(ctx); err != nil {
		return nil, err
	}
	go r.keep()
	return r, nil
}

// Process is this store's process ID, the first part of its entries' fields.
func (r *Redis) Process() string { return r.process }

// Key is the Redis key of group's presence.
func (r *Redis) Key(group string) string { return r.opts.Prefix + "presence:" + group }

func (r *Redis) field(channel string) string { return r.process + ":" + channel }

// beat sets the liveness key and reports whether it had lapsed (it was missing).
func (r *Redis) beat(ctx context.Context) (lapsed bool, err error) {
	ms := r.opts.Liveness.Milliseconds()
	err = redisconn.Retry(ctx, func() error {
		err := r.client.Do(ctx, r.client.B().Set().Key(r.alive).Value("1").Get().PxMilliseconds(ms).Build()).Error()
		lapsed = rueidis.IsRedisNil(err)
		if lapsed {
			return nil
		}
		return err
	})
	if err != nil {
		return false, unavailable("liveness", err)
	}
	return lapsed, nil
}

// keep refreshes the liveness key every third of Liveness until Close. When the key
// had lapsed (Redis restarted or was flushed, or a refresh failed for too long),
// readers may have deleted this process's entries: they are written again.
func (r *Redis) keep() {
	defer close(r.done)
	t := time.NewTicker(r.opts.Liveness / 3)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.Liveness/3)
		lapsed, err := r.beat(ctx)
		if err != nil {
			r.opts.Logger.Warn("canal: presence liveness key not refreshed", "err", err)
		} else if lapsed {
			r.restore(ctx)
		}
		cancel()
	}
}

// restore writes this process's entries again after its liveness key lapsed.
func (r *Redis) restore(ctx context.Context) {
	now, exp := fmt.Sprint(time.Now().UnixMilli()), fmt.Sprint(r.opts.KeyExpiry.Milliseconds())
	r.mu.Lock()
	var execs []rueidis.LuaExec
	for g, fields := range r.local {
		for f, e := range fields {
			execs = append(execs, rueidis.LuaExec{Keys: []string{r.Key(g)}, Args: []string{f, e.value, now, e.uid, exp}})
		}
	}
	r.mu.Unlock()
	for _, res := range joinScript.ExecMulti(ctx, r.client, execs...) {
		if err := res.Error(); err != nil {
			r.opts.Logger.Warn("canal: presence entries not restored", "err", err)
			return
		}
	}
	// A connection that left meanwhile may have been written back after its Leave:
	// remove what is no longer ours, or it would stay as long as this process.
	gone := make(map[string][]string)
	r.mu.Lock()
	for _, e := range execs {
		g, f := e.Keys[0][len(r.opts.Prefix+"presence:"):], e.Args[0]
		if _, ok := r.local[g][f]; !ok {
			gone[g] = append(gone[g], f)
		}
	}
	r.mu.Unlock()
	for g, fields := range gone {
		if _, err := r.leave(ctx, g, fields); err != nil {
			r.opts.Logger.Warn("canal: presence entries not removed", "err", err)
		}
	}
}

// Join implements Store: one script on the group's key (HGET, HSET, HINCRBY,
// PEXPIRE), O(1).
func (r *Redis) Join(ctx context.Context, group, channel string, u canal.User) (bool, error) {
	if err := checkNames(group, channel); err != nil {
		return false, err
	}
	if u.ID == "" {
		return false, ErrAnonymous
	}
	b, err := json.Marshal(record{ID: u.ID, Username: u.Username, Claims: r.opts.claims(u)})
	if err != nil {
		return false, fmt.Errorf("presence: join: claims: %w", err)
	}
	// The script writes {"at":N then this: the object's members after its '{'.
	value := "," + string(b[1:])
	f := r.field(channel)
	var n int64
	err = redisconn.Retry(ctx, func() error {
		var err error
		n, err = joinScript.Exec(ctx, r.client, []string{r.Key(group)},
			[]string{f, value, fmt.Sprint(time.Now().UnixMilli()), u.ID, fmt.Sprint(r.opts.KeyExpiry.Milliseconds())}).AsInt64()
		return err
	})
	if err != nil {
		return false, unavailable("join", err)
	}
	r.mu.Lock()
	if r.local[group] == nil {
		r.local[group] = make(map[string]localEntry)
	}
	r.local[group][f] = localEntry{uid: u.ID, value: value}
	r.mu.Unlock()
	return n == 1, nil
}

// Leave implements Store: one script on the group's key (HGET, HDEL, HINCRBY), O(1).
func (r *Redis) Leave(ctx context.Context, group, channel string, _ canal.User) (bool, error) {
	if err := checkNames(group, channel); err != nil {
		return false, err
	}
	f := r.field(channel)
	r.mu.Lock()
	if g := r.local[group]; g != nil {
		delete(g, f)
		if len(g) == 0 {
			delete(r.local, group)
		}
	}
	r.mu.Unlock()
	counts, err := r.leave(ctx, group, []string{f})
	if err != nil {
		return false, err
	}
	return counts[0] == 0, nil
}

func (r *Redis) leave(ctx context.Context, group string, fields []string) ([]int64, error) {
	var out []int64
	err := redisconn.Retry(ctx, func() error {
		vs, err := leaveScript.Exec(ctx, r.client, []string{r.Key(group)}, fields).ToArray()
		if err != nil {
			return err
		}
		out = make([]int64, len(vs))
		for i, v := range vs {
			if out[i], err = v.AsInt64(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("leave", err)
	}
	return out, nil
}

// Presence implements Store: HGETALL of the group's key, then one EXISTS per process
// with entries in it (pipelined). The entries of processes whose liveness key is gone
// are left out and deleted.
func (r *Redis) Presence(ctx context.Context, group string) ([]Entry, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	var all map[string]string
	err := redisconn.Retry(ctx, func() error {
		var err error
		all, err = r.client.Do(ctx, r.client.B().Hgetall().Key(r.Key(group)).Build()).AsStrMap()
		return err
	})
	if err != nil {
		return nil, unavailable("presence", err)
	}
	byProcess := make(map[string][]string) // process → its fields
	for f := range all {
		if p, _, ok := strings.Cut(f, ":"); ok && !strings.HasPrefix(f, "#") {
			byProcess[p] = append(byProcess[p], f)
		}
	}
	dead, err := r.deadProcesses(ctx, byProcess)
	if err != nil {
		return nil, err
	}
	conns := make([]conn, 0, len(all))
	var gone []string
	for p, fields := range byProcess {
		if dead[p] {
			gone = append(gone, fields...)
			continue
		}
		for _, f := range fields {
			var c conn
			if json.Unmarshal([]byte(all[f]), &c) != nil || c.ID == "" {
				continue // not ours to judge: another writer's entry
			}
			conns = append(conns, c)
		}
	}
	if len(gone) > 0 {
		// Best effort: the next reader tries again.
		_, _ = r.leave(ctx, group, gone)
	}
	return aggregate(conns), nil
}

// deadProcesses checks the liveness key of every process but this one.
func (r *Redis) deadProcesses(ctx context.Context, byProcess map[string][]string) (map[string]bool, error) {
	procs := make([]string, 0, len(byProcess))
	cmds := make(rueidis.Commands, 0, len(byProcess))
	for p := range byProcess {
		if p == r.process {
			continue
		}
		procs = append(procs, p)
		cmds = append(cmds, r.client.B().Exists().Key(r.opts.Prefix+"presence.alive:"+p).Build())
	}
	dead := make(map[string]bool)
	if len(cmds) == 0 {
		return dead, nil
	}
	for i, res := range r.client.DoMulti(ctx, cmds...) {
		n, err := res.AsInt64()
		if err != nil {
			return nil, unavailable("presence", err)
		}
		dead[procs[i]] = n == 0
	}
	return dead, nil
}

// Close stops refreshing the liveness key and deletes it, so that readers drop this
// process's remaining entries at once. Call it after the server has stopped (its
// connections have left); it is idempotent.
func (r *Redis) Close(ctx context.Context) error {
	var err error
	r.once.Do(func() {
		close(r.stop)
		<-r.done
		ctx, cancel := context.WithTimeout(ctx, closeTimeout)
		defer cancel()
		if e := r.client.Do(ctx, r.client.B().Del().Key(r.alive).Build()).Error(); e != nil {
			err = unavailable("close", e)
		}
	})
	return err
}

func unavailable(op string, err error) error {
	return fmt.Errorf("presence: %s: %w: %w", op, canal.ErrUnavailable, err)
}
