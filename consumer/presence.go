package consumer

import (
	"context"
	"slices"

	"github.com/canal-rt/canal"
)

// Presence records who is in which group; package presence has the implementations
// (presence.NewMemory, presence.NewRedis). Channel names one connection; u is its user.
//
// Join records the connection (again, after a refresh: then it updates the entry and
// first is false) and reports whether it is the user's first connection in group.
// Leave removes it and reports whether it was the user's last. Both are idempotent.
type Presence interface {
	Join(ctx context.Context, group, channel string, u canal.User) (first bool, err error)
	Leave(ctx context.Context, group, channel string, u canal.User) (last bool, err error)
}

// The events Options.PresenceEvents sends to a group's members, with "group", "id"
// and "username": once when a user's first connection joins the group, once when
// the last one leaves (a user with three tabs open joins once and leaves once).
const (
	EventPresenceJoin  = "presence.join"
	EventPresenceLeave = "presence.leave"
)

// tracks reports whether presence records group for this connection: a presence is
// configured, the user is authenticated and group is not the user's own.
func (c *Conn) tracks(group string) bool {
	return c.presence != nil && c.Scope().User.ID != "" && group != c.userGroup
}

// track records the connection in group once it is live (accepted, or Connect
// returned); before, Connect's GroupAdd calls only note the group, so a refused
// handshake never appears.
func (c *Conn) track(ctx context.Context, group string) {
	if !c.live || !c.tracks(group) || slices.Contains(c.tracked, group) {
		return
	}
	u := c.Scope().User
	first, err := c.presence.Join(ctx, group, c.channel, u)
	if err != nil {
		c.presenceError("join", group, err)
		return
	}
	c.tracked = append(c.tracked, group)
	if first && c.presenceEvents {
		c.announce(ctx, EventPresenceJoin, group, u)
	}
}

// untrack removes the connection from group's presence.
func (c *Conn) untrack(ctx context.Context, group string) {
	i := slices.Index(c.tracked, group)
	if i < 0 {
		return
	}
	c.tracked = slices.Delete(c.tracked, i, i+1)
	u := c.Scope().User
	last, err := c.presence.Leave(ctx, group, c.channel, u)
	if err != nil {
		c.presenceError("leave", group, err)
		return
	}
	if last && c.presenceEvents {
		c.announce(ctx, EventPresenceLeave, group, u)
	}
}

// golive tracks the groups joined so far, once accepted or Connect has succeeded.
func (c *Conn) golive(ctx context.Context) {
	if c.live {
		return
	}
	c.live = true
	for _, g := range c.groups {
		c.track(ctx, g)
	}
}

// retrack writes the refreshed user into every presence entry of the connection.
func (c *Conn) retrack(ctx context.Context) {
	u := c.Scope().User
	for _, g := range c.tracked {
		if _, err := c.presence.Join(ctx, g, c.channel, u); err != nil {
			c.presenceError("refresh", g, err)
		}
	}
}

func (c *Conn) announce(ctx context.Context, t, group string, u canal.User) {
	err := c.layer.GroupSend(ctx, group, canal.Message{"type": t, "group": group, "id": u.ID, "username": u.Username})
	if err != nil {
		c.presenceError("announce", group, err)
	}
}

// presenceError counts and logs a failed presence write. The socket goes on: presence
// is a view of the connections, and a Redis outage must not close what the layer still
// serves. An entry that failed to leave disappears with its process's liveness key.
func (c *Conn) presenceError(op, group string, err error) {
	c.drops.presenceFailed(op, group, err)
}
