package presence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/canal-rt/canal"
)

// Entry is one user present in a group.
type Entry struct {
	ID          string         `json:"id"`               // canal.User.ID
	Username    string         `json:"username"`         // canal.User.Username
	Claims      map[string]any `json:"claims,omitempty"` // the claims Options.Claims names, those the user has
	Connections int            `json:"connections"`      // how many of the user's connections are in the group
	JoinedAt    time.Time      `json:"joined_at"`        // when the earliest of them joined
}

// Store records who is in which group. channel names one connection (its channel-layer
// name); only authenticated users (a non-empty ID) are recorded.
//
// Join records a connection, or updates its entry when it is there already (a claims
// refresh: the join time stays), and reports whether it is the user's first connection
// in the group. Leave removes it and reports whether it was the user's last; leaving
// a group one is not in is no error and reports false. Presence lists the users in
// the group, ordered by join time, then ID.
//
// *Memory and *Redis implement it, and consumer.Options.Presence takes either.
type Store interface {
	Join(ctx context.Context, group, channel string, u canal.User) (first bool, err error)
	Leave(ctx context.Context, group, channel string, u canal.User) (last bool, err error)
	Presence(ctx context.Context, group string) ([]Entry, error)
}

// Errors of the stores.
var (
	// ErrAnonymous is returned by Join for a user without an ID.
	ErrAnonymous = errors.New("presence: anonymous user")
	// ErrInvalid is wrapped by the errors for a malformed group or channel name.
	ErrInvalid = errors.New("presence: invalid name")
)

// Options are the options both stores share. The zero value records no claims.
type Options struct {
	// Claims names the claims (canal.User.Attrs keys) copied into entries, such as
	// "avatar" or "is_staff". Only those are stored: a user's claims may be private.
	Claims []string
}

// maxName bounds group and channel names, as Channels does (99); the extra room is
// for the suffixes of names made by canal's layers.
const maxName = 200

func checkGroup(group string) error {
	if group == "" || len(group) > maxName {
		return fmt.Errorf("%w: group of %d bytes (1 to %d)", ErrInvalid, len(group), maxName)
	}
	return nil
}

func checkNames(group, channel string) error {
	if err := checkGroup(group); err != nil {
		return err
	}
	if channel == "" || len(channel) > maxName {
		return fmt.Errorf("%w: channel of %d bytes (1 to %d)", ErrInvalid, len(channel), maxName)
	}
	return nil
}

// claims copies the chosen claims u has.
func (o *Options) claims(u canal.User) map[string]any {
	var m map[string]any
	for _, k := range o.Claims {
		if v, ok := u.Attrs[k]; ok {
			if m == nil {
				m = make(map[string]any, len(o.Claims))
			}
			m[k] = v
		}
	}
	return m
}

// conn is one connection's record, as both stores keep it.
type conn struct {
	ID       string         `json:"id"`
	Username string         `json:"username"`
	Claims   map[string]any `json:"claims,omitempty"`
	At       int64          `json:"at"` // join time, Unix milliseconds
}

// aggregate folds connection records into one entry per user. The latest joined
// connection's name and claims win: after a refresh they are all alike anyway.
func aggregate(conns []conn) []Entry {
	slices.SortFunc(conns, func(a, b conn) int { return cmp.Compare(a.At, b.At) })
	byID := make(map[string]int, len(conns))
	var out []Entry
	for _, c := range conns {
		i, ok := byID[c.ID]
		if !ok {
			byID[c.ID] = len(out)
			out = append(out, Entry{ID: c.ID, JoinedAt: time.UnixMilli(c.At)})
			i = len(out) - 1
		}
		e := &out[i]
		e.Connections++
		e.Username, e.Claims = c.Username, c.Claims
	}
	slices.SortStableFunc(out, func(a, b Entry) int {
		return cmp.Or(a.JoinedAt.Compare(b.JoinedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}
