package consumer

import (
	"context"
	"fmt"
	"slices"

	"github.com/canal-rt/canal"
)

// Conn is what a consumer's hooks drive: Channels' self. It wraps the connection with
// the channel layer, the consumer's channel name and its groups.
//
// Concurrency: the hooks of one consumer run one at a time, so a hook may use Conn
// freely. Send, SendText, SendJSON and Close may also be called from other goroutines;
// the group methods may not.
type Conn struct {
	raw     canal.Conn
	layer   canal.Layer
	channel string
	detach  func()
	groups  []string
	gbuf    [2]string // groups' first array: most connections join one or two

	userGroup string // UserGroup(Scope().User.ID) when joined or pending, else ""
	// pending is the user's group until it is joined: with the first groups the
	// connection joins, so that it costs no round trip of its own (join). hs is the
	// handshake's context while Connect runs, for an Accept that joins it.
	pending        string
	hs             context.Context
	drops          *drops
	presence       Presence
	presenceEvents bool
	live           bool        // Connect returned: GroupAdd records presence at once
	tracked        []string    // groups whose presence holds this connection
	rs             *recoveries // Options.Recover's groups (recover.go), else nil
}

// Scope describes the connection.
func (c *Conn) Scope() *canal.Scope { return c.raw.Scope() }

// User is the connection's user: Scope().User, which a refresh (EventRefresh) may
// replace between two hooks. Call it from the hooks; other goroutines use
// Scope().CurrentUser().
func (c *Conn) User() canal.User { return c.raw.Scope().User }

// Raw returns the underlying canal.Conn.
func (c *Conn) Raw() canal.Conn { return c.raw }

// Accept accepts the handshake without a subprotocol.
func (c *Conn) Accept() error { return c.AcceptWith(canal.AcceptOptions{}) }

// AcceptSubprotocol accepts with one of the subprotocols the client offered.
func (c *Conn) AcceptSubprotocol(p string) error {
	return c.AcceptWith(canal.AcceptOptions{Subprotocol: p})
}

// AcceptWith accepts with a subprotocol and extra response headers. With
// Options.Presence, the connection enters the presence of its groups here, so a
// Connect hook that reads presence after accepting finds itself there.
func (c *Conn) AcceptWith(opts canal.AcceptOptions) error {
	if c.pending != "" && c.hs != nil {
		// The user's group is joined before the client is told it may talk.
		if err := c.join(c.hs); err != nil {
			return err
		}
	}
	if err := c.raw.Accept(opts); err != nil {
		return err
	}
	if c.presence != nil && !c.live {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		c.golive(ctx)
	}
	return nil
}

// Send queues a frame.
func (c *Conn) Send(f canal.Frame) error { return c.raw.Send(f) }

// SendText queues a text frame.
func (c *Conn) SendText(s string) error { return c.raw.Send(canal.Text(s)) }

// SendBytes queues a binary frame.
func (c *Conn) SendBytes(b []byte) error { return c.raw.Send(canal.Frame{Binary: true, Data: b}) }

// SendJSON encodes v as JSON and queues it as a text frame. The text is UTF-8 as
// written: <, > and & are not \u-escaped (a socket is not an HTML page), and there is
// no trailing newline. A value JSON cannot hold (NaN, ±Inf, a channel) gives an
// error wrapping ErrEncode and sends nothing; returned from an event handler, it
// drops that event instead of closing the connection (see Options.Events).
func (c *Conn) SendJSON(v any) error {
	b, err := marshalJSON(v)
	if err != nil {
		return fmt.Errorf("consumer: SendJSON: %w", err)
	}
	return c.raw.Send(canal.Frame{Data: b})
}

// Close closes with code (and an optional reason) after the queued frames; before
// Accept it refuses the handshake with 403.
func (c *Conn) Close(code int, reason string) error { return c.raw.Close(code, reason) }

// ChannelName is the consumer's process-local channel ("" without a layer). Other
// processes reach this connection with Layer().Send(ctx, name, msg).
func (c *Conn) ChannelName() string { return c.channel }

// Layer is the channel layer (nil without one).
func (c *Conn) Layer() canal.Layer { return c.layer }

// Groups returns the groups the consumer is in, the user's own (UserGroup) included.
func (c *Conn) Groups() []string {
	if c.pending != "" {
		return append([]string{c.pending}, c.groups...)
	}
	return slices.Clone(c.groups)
}

// GroupAdd joins group. The consumer leaves it automatically before Disconnect.
func (c *Conn) GroupAdd(ctx context.Context, group string) error {
	if c.layer == nil {
		return ErrNoLayer
	}
	return c.join(ctx, group)
}

// join joins groups, and the user's group while it is pending, in one round trip
// when the layer batches (canal.GroupBatcher), else with one GroupAdd each. Recovery
// listens before the join (recover.go). On error nothing is recorded and the user's
// group stays pending, for the next join to try again.
func (c *Conn) join(ctx context.Context, groups ...string) error {
	if c.groups == nil {
		c.groups = c.gbuf[:0]
	}
	// The batch is built at the end of c.groups, where the groups stay once joined:
	// no slice of its own.
	start := len(c.groups)
	if c.pending != "" {
		c.groups = append(c.groups, c.pending)
	}
	c.groups = append(c.groups, groups...)
	batch := c.groups[start:]
	if len(batch) == 0 {
		return nil
	}
	var buf [4]*recovery
	recs := buf[:0]
	if c.rs != nil {
		for _, g := range batch {
			recs = append(recs, c.rs.join(g))
		}
	}
	var err error
	if b, ok := c.layer.(canal.GroupBatcher); ok && len(batch) > 1 {
		err = b.GroupAddMany(ctx, batch, c.channel)
	} else {
		for _, g := range batch {
			if err = c.layer.GroupAdd(ctx, g, c.channel); err != nil {
				break
			}
		}
	}
	for _, r := range recs {
		c.rs.joined(r, err)
	}
	if err != nil {
		clear(batch)
		c.groups = c.groups[:start]
		return err
	}
	c.pending = ""
	for _, g := range batch {
		c.track(ctx, g)
	}
	// Keep each group once: a group joined again only refreshed its join time.
	kept := c.groups[:start]
	for _, g := range batch {
		if !slices.Contains(kept, g) {
			kept = append(kept, g) // never past the element being read
		}
	}
	clear(c.groups[len(kept):])
	c.groups = kept
	return nil
}

// GroupDiscard leaves group.
func (c *Conn) GroupDiscard(ctx context.Context, group string) error {
	if c.layer == nil {
		return ErrNoLayer
	}
	if group == c.pending {
		c.pending = ""
	}
	c.groups = slices.DeleteFunc(c.groups, func(g string) bool { return g == group })
	err := c.layer.GroupDiscard(ctx, group, c.channel)
	c.rs.leave(group)
	c.untrack(ctx, group)
	return err
}

// GroupSend sends msg to every member of group, this consumer included if it is one.
func (c *Conn) GroupSend(ctx context.Context, group string, msg canal.Message) error {
	if c.layer == nil {
		return ErrNoLayer
	}
	return c.layer.GroupSend(ctx, group, msg)
}

// cleanup leaves every group, in one round trip when the layer batches
// (canal.GroupBatcher), and detaches from the layer. Failures are not fatal: the
// layer's group expiry removes what a dead Redis kept.
func (c *Conn) cleanup(ctx context.Context) {
	if c.layer == nil {
		return
	}
	c.pending = ""
	if len(c.groups) > 0 {
		if ctx.Done() != nil { // the server's Disconnect context is already free of cancellation
			ctx = context.WithoutCancel(ctx)
		}
		ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		defer cancel()
		if b, ok := c.layer.(canal.GroupBatcher); ok && len(c.groups) > 1 {
			_ = b.GroupDiscardMany(ctx, c.groups, c.channel)
		} else {
			for _, g := range c.groups {
				_ = c.layer.GroupDiscard(ctx, g, c.channel)
			}
		}
		for _, g := range c.groups {
			c.untrack(ctx, g) // after the discard: the leaver is not told it left
		}
	}
	c.groups = nil
	if c.detach != nil {
		c.detach()
		c.detach = nil
	}
}
