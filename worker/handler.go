package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/layers"
)

var (
	// ErrNoHandler: a message's type has no handler in a Types map. The worker
	// counts it in Stats().Unhandled, logs it (rate-limited) and drops the message,
	// where Channels raises ValueError("No handler for message type ...").
	ErrNoHandler = errors.New("worker: no handler for message type")
	// ErrNoReplyChannel: Reply was given a message without a string "reply_channel".
	ErrNoReplyChannel = errors.New("worker: message has no \"reply_channel\"")
	// ErrDrainTimeout: Run returned with handlers still running after
	// Options.DrainTimeout; their contexts were cancelled.
	ErrDrainTimeout = errors.New("worker: handlers still running after the drain timeout")
	// ErrStarted: Run was called on a worker that already ran.
	ErrStarted = errors.New("worker: Run called twice")
)

// Handler handles the messages of a channel: Channels' consumer for a named
// channel. Handle runs on one of the worker's goroutines, at most
// Options.Concurrency of them at once for the whole worker; it may block (the
// slot stays taken), and should return when ctx is cancelled (at the end of the
// drain timeout).
//
// The message is the handler's alone (each receive decodes or copies it).
// Returning an error counts and logs it (the error, never the message); the
// message is not retried: Channels' layers deliver at most once.
type Handler interface {
	Handle(ctx context.Context, msg canal.Message) error
}

// HandlerFunc is a function as a Handler.
type HandlerFunc func(ctx context.Context, msg canal.Message) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, msg canal.Message) error { return f(ctx, msg) }

// Types dispatches a message by its "type" to the function registered for it, as a
// Channels consumer dispatches "thumbnail.make" to its method thumbnail_make. A
// type with no entry is an error wrapping ErrNoHandler; a message without a valid
// type (canal.Message.ValidateType) one wrapping canal.ErrInvalidMessage. The
// worker drops both, counted in Stats().Unhandled.
type Types map[string]HandlerFunc

// Handle calls the function registered for msg's type.
func (t Types) Handle(ctx context.Context, msg canal.Message) error {
	if err := msg.ValidateType(); err != nil {
		return err
	}
	f := t[msg.Type()]
	if f == nil {
		return fmt.Errorf("%w %q", ErrNoHandler, msg.Type())
	}
	return f(ctx, msg)
}

// validate checks the keys as Channels checks a type before dispatching it.
func (t Types) validate() error {
	for _, typ := range slices.Sorted(maps.Keys(t)) {
		if err := (canal.Message{"type": typ}).ValidateType(); err != nil {
			return fmt.Errorf("worker: Types: %w", err)
		}
		if t[typ] == nil {
			return fmt.Errorf("worker: Types: nil function for type %q", typ)
		}
	}
	return nil
}

// Channels routes normal channel names to their handlers: Channels'
// ChannelNameRouter. A name is a normal (worker) channel name in Channels' rules,
// such as "thumbnails": at most 99 of a-z A-Z 0-9 - _ . and no "!" (those names
// belong to one process; see package layers).
type Channels map[string]Handler

func (c Channels) validate() error {
	if len(c) == 0 {
		return errors.New("worker: no channels to receive from")
	}
	for _, name := range slices.Sorted(maps.Keys(c)) {
		if err := layers.ValidChannelName(name); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		if strings.Contains(name, "!") {
			return fmt.Errorf("worker: %w: %q is a process-specific channel, not a worker channel",
				canal.ErrInvalidName, name)
		}
		switch h := c[name].(type) {
		case nil:
			return fmt.Errorf("worker: nil handler for channel %q", name)
		case HandlerFunc:
			if h == nil {
				return fmt.Errorf("worker: nil handler for channel %q", name)
			}
		case Types:
			if err := h.validate(); err != nil {
				return fmt.Errorf("%w (channel %q)", err, name)
			}
		}
	}
	return nil
}

// ReplyChannel is the key under which a request names the channel for its answer,
// as Channels' own messages did.
const ReplyChannel = "reply_channel"

// Reply sends reply to the channel named by msg's "reply_channel": typically a
// channel Django made with channel_layer.new_channel(), or a consumer's
// self.channel_name. Errors: ErrNoReplyChannel when msg names none, and the
// layer's (canal.ErrChannelFull, canal.ErrInvalidName, canal.ErrUnavailable)
// wrapped.
func Reply(ctx context.Context, layer canal.Layer, msg, reply canal.Message) error {
	ch, ok := msg[ReplyChannel].(string)
	if !ok || ch == "" {
		return ErrNoReplyChannel
	}
	if err := layer.Send(ctx, ch, reply); err != nil {
		return fmt.Errorf("worker: reply to %q: %w", ch, err)
	}
	return nil
}
