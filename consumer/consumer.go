package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/canal-rt/canal"
)

// The hooks a consumer may implement. All are optional; a consumer without Connect
// accepts every connection that reaches it.
type (
	// Connecter runs on the handshake, after the consumer's groups are joined. It calls
	// c.Accept to accept; returning without accepting leaves the handshake pending until
	// an event accepts it or the server's timeout refuses it (403). An error refuses it.
	Connecter interface {
		Connect(ctx context.Context, c *Conn) error
	}
	// Receiver gets each client frame, text or binary.
	Receiver interface {
		Receive(ctx context.Context, c *Conn, f canal.Frame) error
	}
	// JSONReceiver gets each client text frame decoded as JSON. A consumer that has it
	// is a JSON consumer: invalid JSON closes with 1007 and binary frames with 1003,
	// unless Options.OnInvalid says otherwise. It takes precedence over Receiver.
	JSONReceiver interface {
		ReceiveJSON(ctx context.Context, c *Conn, content json.RawMessage) error
	}
	// Disconnecter runs once at the end, after the groups are left, with the close code.
	// It runs too when Connect failed: with 1006 when it failed before the accept.
	Disconnecter interface {
		Disconnect(ctx context.Context, c *Conn, code int)
	}
	// EventReceiver gets layer events whose type has no handler in Options.Events.
	EventReceiver interface {
		Event(ctx context.Context, c *Conn, m canal.Message) error
	}
)

// EventFunc handles one type of layer event for a consumer of type T. A method
// expression fits: (*Chat).ChatMessage.
type EventFunc[T any] func(T, context.Context, *Conn, canal.Message) error

// Options configure a consumer. The zero value is a consumer without a channel layer.
type Options[T any] struct {
	// Layer is the channel layer for groups and events. Without one, the consumer has no
	// channel name and group calls return ErrNoLayer.
	Layer canal.Layer
	// Groups are joined before Connect and left before Disconnect (Channels' groups).
	Groups []string
	// Events maps a layer event type ("chat.message") to its handler. Types without an
	// entry go to the consumer's Event method if it has one; otherwise they are
	// dropped, counted in Stats.Unhandled and logged at most once a second per type.
	//
	// An event handler's error closes the connection (1011, or a *canal.CloseError's
	// code), except an error wrapping ErrEncode (SendJSON of NaN, say) that is not a
	// *canal.CloseError: the message is bad, not the connection, so that event is
	// dropped, counted in Stats.BadEvents and logged (type and error, never the
	// message), and the connection goes on.
	Events map[string]EventFunc[T]
	// Frames maps a layer event type to the frame sent to the client for it. The frame
	// is built once per message and the same bytes go to every member of a group: the
	// fast path for fan-out, where Events would encode once per member. A type may be
	// in Events or Frames, not both.
	//
	// A FrameFunc depends on the message only, so its error means the message is bad
	// (NaN in a JSONFrame): the message is skipped for every member, counted once in
	// Stats.BadFrames and logged (type and error, never the message); no connection
	// is closed.
	Frames map[string]FrameFunc
	// OnInvalid decides what a JSON consumer does with a frame that is not a JSON text
	// frame (err wraps ErrInvalidJSON or ErrBinaryFrame). Returning nil keeps the socket
	// open (it may reply first); an error closes it like any handler error. Nil closes
	// with 1007 for invalid JSON and 1003 for binary frames.
	OnInvalid func(ctx context.Context, c *Conn, f canal.Frame, err error) error
	// ChannelPrefix prefixes the consumer's channel name. Default "specific".
	ChannelPrefix string
	// Logger receives dropped events, rate-limited per event type. Default
	// slog.Default().
	Logger *slog.Logger

	// NoUserGroup keeps authenticated connections out of their user's group
	// (UserGroup). By default each joins it, so that DisconnectUser, SendToUser and
	// RefreshUser (and Django's django_canal.realtime) reach it from any process:
	// with the connection's first groups, in the same round trip when the layer
	// batches (canal.GroupBatcher): Options.Groups before Connect, else Connect's
	// first GroupAdd, else at the accept or when Connect returns.
	NoUserGroup bool
	// Presence, when set, records the connection in every group it joins (Groups and
	// Conn.GroupAdd; not the user's own group) once it is accepted (Conn.Accept) or
	// Connect has returned, and removes it when it leaves. Only authenticated
	// connections are recorded. A failed write is logged and counted in
	// Stats.PresenceErrors; the connection goes on.
	Presence Presence
	// PresenceEvents sends EventPresenceJoin and EventPresenceLeave to a group's
	// members when a user's first connection joins it and when the last one leaves.
	// The consumers handle them as any event (Events, Frames or Event). Needs Presence.
	PresenceEvents bool

	// MaxAge, when positive, limits how long a connection lives on one credential:
	// at that age the consumer asks the client for a fresh one over the socket
	// (EventReauth) and closes with CloseReauthRequired (4401) if Reauthorize has not
	// accepted one for the same user within ReauthGrace. See EventReauth for the
	// exchange and the client's side. Needs Reauthorize. Server-Sent Events clients
	// cannot answer: their streams end at MaxAge + ReauthGrace.
	MaxAge time.Duration
	// ReauthGrace is how long the client has to answer (DefaultReauthGrace, 30s,
	// when 0).
	ReauthGrace time.Duration
	// Reauthorize checks a credential a client sent in-band: a ticket store's
	// Consume, or an auth.Verifier. An error wrapping canal.ErrUnavailable lets the
	// client try again within the grace period; any other closes with 4401.
	Reauthorize func(ctx context.Context, credential string) (canal.User, error)

	// Recover names the groups (path.Match globs, e.g. "chat_*") whose messages a
	// reconnecting client recovers: it gives its last positions in the handshake
	// (the "recover" query parameter), gets what it missed in order, then the live
	// messages, without a gap or a duplicate, from any process; or, when the
	// history no longer reaches back, a frame that says so. Each message of these
	// groups tells the client its position. See EventRecover for the wire. Needs a
	// Layer with history (canal.HistoryLayer, and a history rule for the groups).
	Recover []string
	// RecoverBuffer bounds the live messages one group holds during a catch-up
	// (history.DefaultBuffer when 0); past it they are read back from the history.
	RecoverBuffer int
	// RecoverCheck is how often the position check runs: a recovered connection
	// behind its group's history (a live message lost on the way, with no later one
	// to show the gap) catches up then. One goroutine per Handler reads each group's
	// position once per interval, whatever the number of connections (see
	// DefaultRecoverCheck). DefaultRecoverCheck (30s) when 0; at least
	// MinRecoverCheck (1s); negative turns the check off. Needs Recover.
	RecoverCheck time.Duration
}

// Errors reported to OnInvalid and by group calls.
var (
	ErrInvalidJSON = errors.New("consumer: invalid JSON")
	ErrBinaryFrame = errors.New("consumer: binary frame sent to a JSON consumer")
	ErrNoLayer     = errors.New("consumer: no channel layer configured")
)

// cleanupTimeout bounds the group discards at the end of a connection, which may go to
// Redis; a dead Redis must not hold a disconnect forever.
const cleanupTimeout = 5 * time.Second

// Handler is a consumer mounted on a route: a canal.Handler that makes one T per
// connection, as Channels makes one consumer instance per connection.
//
// Concurrency: a Handler is immutable and shared by all connections. Each T is used
// by one connection only, and its hooks are called one at a time, so a consumer needs
// no locking for its own fields.
type Handler[T any] struct {
	factory func() T
	opts    Options[T]
	frames  map[string]*frameMemo
	drops   *drops
	recover *recoverRules // nil without Options.Recover (recover.go)
}

// Stats returns the counts of layer events this handler dropped rather than closing
// connections over them. Safe for concurrent use.
func (h *Handler[T]) Stats() Stats { return h.drops.stats() }

// New returns the handler for consumer type T; factory makes a fresh T per connection.
func New[T any](factory func() T, opts Options[T]) (*Handler[T], error) {
	if factory == nil {
		return nil, errors.New("consumer: nil factory")
	}
	if len(opts.Groups) > 0 && opts.Layer == nil {
		return nil, fmt.Errorf("%w: Groups %q need a Layer", ErrNoLayer, opts.Groups)
	}
	if len(opts.Events) > 0 && opts.Layer == nil {
		return nil, fmt.Errorf("%w: Events need a Layer", ErrNoLayer)
	}
	for t, fn := range opts.Events {
		if reserved(t) {
			return nil, fmt.Errorf("consumer: event type %q is reserved (handled by the consumer itself)", t)
		}
		if err := (canal.Message{"type": t}).ValidateType(); err != nil {
			return nil, fmt.Errorf("consumer: event handler: %w", err)
		}
		if fn == nil {
			return nil, fmt.Errorf("consumer: nil handler for event %q", t)
		}
	}
	if len(opts.Frames) > 0 && opts.Layer == nil {
		return nil, fmt.Errorf("%w: Frames need a Layer", ErrNoLayer)
	}
	if opts.Presence != nil && opts.Layer == nil {
		return nil, fmt.Errorf("%w: Presence needs a Layer", ErrNoLayer)
	}
	if opts.PresenceEvents && opts.Presence == nil {
		return nil, errors.New("consumer: PresenceEvents needs a Presence")
	}
	switch {
	case opts.MaxAge < 0:
		return nil, fmt.Errorf("consumer: negative MaxAge %v", opts.MaxAge)
	case opts.ReauthGrace < 0:
		return nil, fmt.Errorf("consumer: negative ReauthGrace %v", opts.ReauthGrace)
	case opts.MaxAge > 0 && opts.Reauthorize == nil:
		return nil, errors.New("consumer: MaxAge needs Reauthorize, to check the fresh credentials")
	}
	rr, err := newRecoverRules(opts.Layer, opts.Recover, opts.RecoverBuffer, opts.RecoverCheck)
	if err != nil {
		return nil, err
	}
	for t := range opts.Events {
		if reservedRecover(t) {
			return nil, fmt.Errorf("consumer: event type %q is reserved (handled by the consumer itself)", t)
		}
	}
	if opts.ReauthGrace == 0 {
		opts.ReauthGrace = DefaultReauthGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &drops{logger: opts.Logger}
	rr.setDrops(d)
	memos := make(map[string]*frameMemo, len(opts.Frames))
	for t, fn := range opts.Frames {
		if reserved(t) || reservedRecover(t) {
			return nil, fmt.Errorf("consumer: event type %q is reserved (handled by the consumer itself)", t)
		}
		if err := (canal.Message{"type": t}).ValidateType(); err != nil {
			return nil, fmt.Errorf("consumer: frame builder: %w", err)
		}
		if fn == nil {
			return nil, fmt.Errorf("consumer: nil frame builder for event %q", t)
		}
		if _, dup := opts.Events[t]; dup {
			return nil, fmt.Errorf("consumer: event %q is in both Events and Frames", t)
		}
		if rr != nil {
			fn = rr.frameFunc(fn) // built once per message with its position
		}
		memos[t] = &frameMemo{build: fn, typ: t, drops: d}
	}
	if opts.ChannelPrefix == "" {
		opts.ChannelPrefix = "specific"
	}
	return &Handler[T]{factory: factory, opts: opts, frames: memos, drops: d, recover: rr}, nil
}

// Connect implements canal.Handler.
func (h *Handler[T]) Connect(ctx context.Context, raw canal.Conn) (canal.Session, error) {
	inst := h.factory()
	c := &Conn{raw: raw, layer: h.opts.Layer, drops: h.drops, presence: h.opts.Presence,
		presenceEvents: h.opts.PresenceEvents}
	deliver := h.deliverFunc(raw)
	if h.recover != nil {
		// Recovered groups' messages go through their history.Recovery (recover.go).
		since, err := parseRecover(raw.Scope())
		if err != nil {
			return nil, &canal.RejectError{Status: 400, Reason: err.Error()[len("consumer: "):]}
		}
		c.rs = &recoveries{rules: h.recover, layer: h.opts.Layer.(canal.HistoryLayer), raw: raw,
			next: deliver, since: since, token: new(byte)}
		c.raw, deliver = &carrier{Conn: raw}, c.rs.deliver
	}
	if l := h.opts.Layer; l != nil {
		name, detach, err := l.Attach(ctx, h.opts.ChannelPrefix, deliver)
		if err != nil {
			return nil, layerReject(err)
		}
		c.channel, c.detach = name, detach
		if id := raw.Scope().User.ID; id != "" && !h.opts.NoUserGroup {
			// Joined with the first groups (join): Options.Groups here, else the
			// first GroupAdd of Connect, else at the accept or when Connect returns.
			c.userGroup = UserGroup(id)
			c.pending = c.userGroup
		}
		if len(h.opts.Groups) > 0 {
			if err := c.join(ctx, h.opts.Groups...); err != nil {
				c.cleanup(ctx)
				return nil, layerReject(err)
			}
		}
	}
	c.hs = ctx
	var err error
	if cn, ok := any(inst).(Connecter); ok {
		err = cn.Connect(ctx, c)
	} else {
		err = c.Accept()
	}
	if err == nil && c.pending != "" {
		err = c.join(ctx) // Connect joined nothing and did not accept
	}
	c.hs = nil
	if err != nil {
		// No session will exist, so the server will never call Disconnect: run it
		// here, after the groups are left, as Channels does after DenyConnection.
		c.cleanup(ctx)
		if d, ok := any(inst).(Disconnecter); ok {
			d.Disconnect(context.WithoutCancel(ctx), c, failedConnectCode(raw, err))
		}
		return nil, layerReject(err)
	}
	c.golive(ctx)
	s := &session[T]{h: h, inst: inst, c: c}
	s.startLifetime()
	return s, nil
}

// failedConnectCode is the code Disconnect gets when Connect failed: 1006 before the
// accept (the handshake is refused, no close frame is sent), else what the server (or
// a first-message middleware) closes the opened socket with: canal.CloseFor's code.
func failedConnectCode(raw canal.Conn, err error) int {
	if !raw.Accepted() {
		return canal.CloseAbnormal
	}
	code, _ := canal.CloseFor(err)
	return code
}

// deliverFunc is what the layer calls for each message to raw. Events listed in Frames
// are built once per message (frameMemo) on the layer's goroutine and handed over as a
// ready frame when raw can take one, so a group message costs each idle member a queued
// write, not a session call. Middleware between the server and the consumer may wrap
// raw; canal.AsFrameDeliverer finds the server's DeliverFrame under wrappers that
// Unwrap.
//
// A message whose frame cannot be built is taken (true) and dropped: it is bad for
// every member alike, and frameMemo has counted and logged it once.
func (h *Handler[T]) deliverFunc(raw canal.Conn) func(canal.Message) bool {
	fd, ok := canal.AsFrameDeliverer(raw)
	if !ok || len(h.frames) == 0 {
		return raw.Deliver
	}
	return func(m canal.Message) bool {
		t, _ := m["type"].(string)
		fm := h.frames[t] // its key passed ValidateType in New
		if fm == nil {
			return raw.Deliver(m)
		}
		f, err := fm.frame(m)
		if err != nil {
			return true
		}
		if !h.fast(m, f) {
			return raw.Deliver(m) // its position needs a frame of its own (recover.go)
		}
		return fd.DeliverFrame(m, f)
	}
}

// layerReject turns an outage of a backing service during the handshake (the layer,
// or anything a Connect hook reports with canal.ErrUnavailable) into 503.
func layerReject(err error) error {
	if errors.Is(err, canal.ErrUnavailable) {
		return &canal.RejectError{Status: 503, Reason: "channel layer unavailable", Err: err}
	}
	return err
}

type session[T any] struct {
	h    *Handler[T]
	inst T
	c    *Conn
	life *lifetime // nil without Options.MaxAge
}

func (s *session[T]) Receive(ctx context.Context, _ canal.Conn, f canal.Frame) error {
	if ok, err := s.reauthFrame(ctx, f); ok {
		return err
	}
	if jr, ok := any(s.inst).(JSONReceiver); ok {
		switch {
		case f.Binary:
			return s.invalid(ctx, f, ErrBinaryFrame, canal.CloseUnsupportedData)
		case !json.Valid(f.Data):
			return s.invalid(ctx, f, ErrInvalidJSON, canal.CloseInvalidPayload)
		}
		return jr.ReceiveJSON(ctx, s.c, f.Data)
	}
	if r, ok := any(s.inst).(Receiver); ok {
		return r.Receive(ctx, s.c, f)
	}
	return nil
}

func (s *session[T]) invalid(ctx context.Context, f canal.Frame, err error, code int) error {
	if s.h.opts.OnInvalid != nil {
		return s.h.opts.OnInvalid(ctx, s.c, f, err)
	}
	return &canal.CloseError{Code: code, Reason: err.Error()[len("consumer: "):], Err: err}
}

func (s *session[T]) Event(ctx context.Context, _ canal.Conn, m canal.Message) error {
	if err := m.ValidateType(); err != nil {
		s.h.drops.invalidEvent(s.c.Scope().RoutePattern, err)
		return nil
	}
	t := m.Type()
	if ok, err := s.reservedEvent(ctx, t, m); ok {
		return err
	}
	if ok, err := s.recoverEvent(ctx, t, m); ok {
		return err
	}
	sent := s.carry(m) // a recovered group's position rides on the frames sent (recover.go)
	if err := s.event(ctx, t, m); err != nil {
		return err
	}
	return sent()
}

// event dispatches a layer event of type t to its frame or handler.
func (s *session[T]) event(ctx context.Context, t string, m canal.Message) error {
	if fm, ok := s.h.frames[t]; ok {
		f, err := fm.frame(m)
		if err != nil {
			return nil // a bad message, counted and logged by frameMemo
		}
		return s.c.Send(f)
	}
	if fn, ok := s.h.opts.Events[t]; ok {
		return s.eventError(t, fn(s.inst, ctx, s.c, m))
	}
	switch t {
	case "websocket.receive":
		// Channels handles it exactly like a client frame.
		if b, ok := m["bytes"].([]byte); ok {
			return s.Receive(ctx, nil, canal.Frame{Binary: true, Data: b})
		}
		return s.Receive(ctx, nil, canal.Text(m.String("text")))
	case "websocket.close", "websocket.disconnect":
		// Lets Django (or any process) close a socket, e.g. when the user logs out.
		code := canal.CloseNormal
		if v, ok := asInt(m["code"]); ok && canal.ValidAppCloseCode(v) {
			code = v
		}
		return s.c.Close(code, m.String("reason"))
	}
	if er, ok := any(s.inst).(EventReceiver); ok {
		return s.eventError(t, er.Event(ctx, s.c, m))
	}
	s.h.drops.noHandler(t, s.c.Scope().RoutePattern)
	return nil
}

// eventError decides what an event handler's error does. An encoding failure means
// the message is bad (it carries NaN, say), not the connection: the event is dropped
// and the socket stays. Anything else, and an explicit *canal.CloseError, closes.
func (s *session[T]) eventError(t string, err error) error {
	if err == nil {
		return nil
	}
	var ce *canal.CloseError
	if errors.As(err, &ce) || !errors.Is(err, ErrEncode) {
		return err
	}
	s.h.drops.badEvent(t, s.c.Scope().RoutePattern, err)
	return nil
}

func (s *session[T]) Disconnect(ctx context.Context, _ canal.Conn, code int) {
	s.stopLifetime()
	s.c.cleanup(ctx)
	if d, ok := any(s.inst).(Disconnecter); ok {
		d.Disconnect(ctx, s.c, code)
	}
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case uint64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}
