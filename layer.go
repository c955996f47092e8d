package canal

import "context"

// Layer is a channel layer, with Channels' semantics. Implementations live in package
// layers: layers.NewMemory (the embedded default) and layers.NewRedis (wire-compatible
// with channels_redis).
//
// Channel and group names follow Channels' rules (see layers.ValidChannelName). Send
// returns ErrChannelFull at capacity; GroupSend skips full members and never returns it.
//
// Implementations are safe for concurrent use. Every blocking method honours ctx.
type Layer interface {
	// Send puts msg on a channel.
	Send(ctx context.Context, channel string, msg Message) error
	// Receive waits for the next message on a channel made by NewChannel or a
	// normal (worker) channel name.
	Receive(ctx context.Context, channel string) (Message, error)
	// NewChannel returns a new process-local channel name read with Receive.
	NewChannel(ctx context.Context, prefix string) (string, error)
	// Attach returns a new process-local channel whose messages are pushed to deliver
	// instead of waiting in Receive, so a connection needs no goroutine to listen.
	// deliver runs on the sender's or the layer's goroutines, with no layer lock held:
	// it must not block, and returns false when its queue is full (the channel then
	// counts as full). detach stops delivery and frees the channel; a delivery already
	// under way may still complete, so deliver must stay safe to call after detach.
	Attach(ctx context.Context, prefix string, deliver func(Message) bool) (channel string, detach func(), err error)
	// GroupAdd adds channel to group (idempotent; refreshes its join time).
	GroupAdd(ctx context.Context, group, channel string) error
	// GroupDiscard removes channel from group; silent when absent.
	GroupDiscard(ctx context.Context, group, channel string) error
	// GroupSend sends msg to every member of group, skipping full ones.
	GroupSend(ctx context.Context, group string, msg Message) error
	// Flush drops every message and group of the layer.
	Flush(ctx context.Context) error
	// Close releases the layer's resources and stops its goroutines.
	Close(ctx context.Context) error
}

// GroupBatcher is a Layer that joins or leaves several groups at once, in one round
// trip per backing server instead of one per group. Package consumer uses it, when
// its layer has it, for a connection's groups at the handshake and at the end; a
// layer without it gets one GroupAdd or GroupDiscard per group.
type GroupBatcher interface {
	// GroupAddMany adds channel to every group, as GroupAdd does to one. On error,
	// some of the groups may have been joined.
	GroupAddMany(ctx context.Context, groups []string, channel string) error
	// GroupDiscardMany removes channel from every group, as GroupDiscard does.
	GroupDiscardMany(ctx context.Context, groups []string, channel string) error
}
