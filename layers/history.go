package layers

import (
	_ "embed"
	"fmt"
	"hash/maphash"
	"path"
	"sync"
	"time"

	"github.com/canal-rt/canal"
)

// Group history, shared by the Redis (redis_history.go) and memory
// (memory_history.go) layers: which groups keep it, and how long.

// HistoryRule gives the groups whose names match Group (a path.Match glob, e.g.
// "chat_*") a history: every message published to them gets a position (an offset
// counted from 1 and an epoch), and the last Size messages, none older than TTL,
// can be read again with History by a client that reconnects with its last
// position. The first matching rule wins.
type HistoryRule struct {
	Group string
	// Size bounds the messages kept per group (0: DefaultHistorySize; at most
	// MaxHistorySize).
	Size int
	// TTL bounds their age (0: DefaultHistoryTTL). A group's history is dropped
	// TTL after its last message; its epoch and offset are kept for
	// max(TTL, HistoryMetaTTL), so a client that missed nothing in a quiet group
	// still recovers.
	TTL time.Duration
}

// History defaults and bounds.
const (
	DefaultHistorySize = 100
	MaxHistorySize     = 100_000
	DefaultHistoryTTL  = 5 * time.Minute
	// HistoryMetaTTL is how long a group's epoch and last offset outlive its last
	// message (or a History call that found none).
	HistoryMetaTTL = 24 * time.Hour
	// historyPage bounds what one History call returns (and reads from Redis).
	historyPage = 1000
)

// The Lua scripts of the Redis layer; django_canal/history.py runs copies of the same
// bytes (TestHistoryScriptsMatchPython checks it).
var (
	//go:embed scripts/publish.lua
	publishLua string
	//go:embed scripts/history.lua
	historyLua string
)

// historyRules holds validated rules with their defaults applied.
type historyRules []HistoryRule

// newHistoryRules validates rules and applies the defaults; layer starts errors.
func newHistoryRules(layer string, rules []HistoryRule) (historyRules, error) {
	out := make(historyRules, len(rules))
	for i, r := range rules {
		if _, err := path.Match(r.Group, ""); err != nil || r.Group == "" {
			return nil, fmt.Errorf("layers: %s: history rule %d: bad group pattern %q", layer, i, r.Group)
		}
		switch {
		case r.Size < 0 || r.Size > MaxHistorySize:
			return nil, fmt.Errorf("layers: %s: history rule %q: Size %d out of range [0, %d]", layer, r.Group, r.Size, MaxHistorySize)
		case r.TTL < 0:
			return nil, fmt.Errorf("layers: %s: history rule %q: negative TTL %v", layer, r.Group, r.TTL)
		}
		if r.Size == 0 {
			r.Size = DefaultHistorySize
		}
		if r.TTL == 0 {
			r.TTL = DefaultHistoryTTL
		}
		out[i] = r
	}
	return out, nil
}

// rule returns the first rule matching group, or nil.
func (rs historyRules) rule(group string) *HistoryRule {
	for i := range rs {
		if ok, _ := path.Match(rs[i].Group, group); ok {
			return &rs[i]
		}
	}
	return nil
}

// metaTTL is how long a group's epoch and offset are kept.
func (r *HistoryRule) metaTTL() time.Duration { return max(r.TTL, HistoryMetaTTL) }

// checkPublish applies Publish's checks: GroupSend's, and PositionKey is reserved.
func checkPublish(group string, msg canal.Message) error {
	if err := ValidGroupName(group); err != nil {
		return fmt.Errorf("layers: publish: %w", err)
	}
	if err := msg.ValidateType(); err != nil {
		return fmt.Errorf("layers: publish to %q: %w", group, err)
	}
	for _, k := range [...]string{asgiChannelKey, canal.PositionKey} {
		if _, ok := msg[k]; ok {
			return fmt.Errorf("layers: publish to %q: %w: %q is reserved", group, canal.ErrInvalidMessage, k)
		}
	}
	return nil
}

// errNoHistory is Publish's and History's error for a group no rule names.
func errNoHistory(op, group string) error {
	return fmt.Errorf("layers: %s %q: %w", op, group, canal.ErrNoHistory)
}

// errNotRecovered is History's error when since is out of reach.
func errNotRecovered(group string, since canal.Position) error {
	return fmt.Errorf("layers: history of %q since offset %d: %w", group, since.Offset, canal.ErrNotRecovered)
}

// publishLocks serializes this process's publishers of one group (striped by
// name: a fixed 64 mutexes), so that they do not race each other for the next
// offset; other processes' publishers are reconciled by the scripts.
type publishLocks struct {
	seed maphash.Seed
	mu   [64]sync.Mutex

	pmu       sync.Mutex
	positions map[string]canal.Position // last known per group (redis_history.go)
}

func newPublishLocks() *publishLocks { return &publishLocks{seed: maphash.MakeSeed()} }

func (p *publishLocks) of(group string) *sync.Mutex {
	return &p.mu[maphash.String(p.seed, group)%uint64(len(p.mu))]
}
