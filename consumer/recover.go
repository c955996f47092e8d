package consumer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/history"
)

// Recovery (Options.Recover): a client that reconnects gives the position of the last
// message it got in each group, and gets what it missed, in order, then the live
// messages, with no gap and no duplicate, from any process on the layer. The wire:
//
// The client gives its positions in the handshake's query string, which WebSockets and
// event streams both have:
//
//	?recover=<base64url of {"chat_1": [42, "<epoch>"], ...}>
//
// (padding optional; at most MaxRecoverGroups groups in MaxRecoverParam bytes; a
// malformed value refuses the handshake with 400). A group the connection does not
// join, or that no Recover pattern names, is ignored.
//
// Each message of a recovered group tells the client its position. A JSON object frame
// carries it as its first key, spliced in without decoding the frame (the frame built
// once per message by Options.Frames stays built once):
//
//	{"canal": {"group": "chat_1", "offset": 43, "epoch": "<epoch>"}, "text": "hi"}
//
// so the key "canal" is reserved at the top level of such frames. A message whose
// handler sends no JSON object frame (a binary frame, a JSON array, or nothing at
// all: it was filtered) is followed by a position frame instead:
//
//	{"type": "canal.position", "group": "chat_1", "offset": 43, "epoch": "<epoch>"}
//
// After the first catch-up of each group, and whenever the history could not supply
// what was missed, the consumer sends
//
//	{"type": "canal.recover", "group": "chat_1", "recovered": true, "offset": 43, "epoch": "<epoch>"}
//
// recovered is false when the client gave a position the history no longer reaches
// (trimmed by size or age, or lost: another epoch, Redis restarted empty): the client
// must reload its state; the stream goes on from the position in the frame. A client
// that gave no position gets recovered true and its starting position, so that it can
// recover even if no message comes before it is cut off.
//
// A live message of a recovered group that the connection's queue cannot take is read
// back from the history once the queue has room; a connection whose queue cannot
// even take that catch-up is closed with 1013 (try again later) rather than left with
// a hole: the client reconnects from its last position and loses nothing. So is one
// whose history cannot be read (Redis down): the client retries.
//
// A live message lost on the way with no later one behind it (the last before a quiet
// period) shows no gap; the position check (Options.RecoverCheck, every 30 s by
// default; see DefaultRecoverCheck) finds it: one read of each recovered group's
// current position per Handler and interval, whatever the number of connections,
// and a connection behind it catches up as above. The client sees the message, with
// its position, as if it had come live.
const (
	// EventRecover is the type of the frame that ends a catch-up.
	EventRecover = "canal.recover"
	// EventPosition is the type of the frame that tells a message's position when
	// no JSON object frame could carry it.
	EventPosition = "canal.position"
	// RecoverParam is the query parameter that carries a client's positions.
	RecoverParam = "recover"
	// MaxRecoverParam bounds the parameter's length (base64url): the whole request
	// head must fit Fiber's 4 KiB read buffer (past it: 431), cookies included. 32
	// positions of 20-byte group names take about 2 KiB.
	MaxRecoverParam = 2048
	// MaxRecoverGroups bounds the groups one handshake may give positions for.
	MaxRecoverGroups = 32
	// eventCatchup is the session's own event that runs a catch-up on its goroutine,
	// told apart from any layer message by a Go pointer no peer can send.
	eventCatchup = "canal.catchup"
	// recoverKey is the key spliced into JSON object frames.
	recoverKey = "canal"
	// maxEpoch bounds an epoch given by a client (the layers' are 16 to 32 bytes).
	maxEpoch = 128
)

// ErrRecoverParam: the recover query parameter does not decode (see RecoverParam).
var ErrRecoverParam = errors.New("consumer: bad recover parameter")

// recoverRules are Options.Recover, checked.
type recoverRules struct {
	patterns []string
	buffer   int
	check    *recoverChecker // nil when Options.RecoverCheck is negative
}

func newRecoverRules(layer canal.Layer, patterns []string, buffer int, check time.Duration) (*recoverRules, error) {
	if len(patterns) == 0 {
		switch {
		case buffer != 0:
			return nil, errors.New("consumer: RecoverBuffer without Recover")
		case check != 0:
			return nil, errors.New("consumer: RecoverCheck without Recover")
		}
		return nil, nil
	}
	if layer == nil {
		return nil, fmt.Errorf("%w: Recover needs a Layer", ErrNoLayer)
	}
	if _, ok := layer.(canal.HistoryLayer); !ok {
		return nil, fmt.Errorf("consumer: Recover needs a layer with history (canal.HistoryLayer); %T is not one", layer)
	}
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return nil, fmt.Errorf("consumer: bad Recover pattern %q", p)
		}
	}
	if buffer < 0 {
		return nil, fmt.Errorf("consumer: negative RecoverBuffer %d", buffer)
	}
	every, err := recoverInterval(check)
	if err != nil {
		return nil, err
	}
	rr := &recoverRules{patterns: patterns, buffer: buffer}
	if every > 0 {
		rr.check = newRecoverChecker(layer.(canal.HistoryLayer), every)
	}
	return rr, nil
}

// matches reports whether group's messages are recovered (nil rules: never).
func (rr *recoverRules) matches(group string) bool {
	if rr == nil {
		return false
	}
	for _, p := range rr.patterns {
		if ok, _ := path.Match(p, group); ok {
			return true
		}
	}
	return false
}

// position returns the position m carries when its group is recovered.
func (rr *recoverRules) position(m canal.Message) (string, canal.Position, bool) {
	if rr == nil {
		return "", canal.Position{}, false
	}
	if _, ok := m[canal.PositionKey]; !ok {
		return "", canal.Position{}, false
	}
	g, p, ok := canal.PositionOf(m)
	if !ok || !rr.matches(g) {
		return "", canal.Position{}, false
	}
	return g, p, true
}

// frameFunc wraps an Options.Frames builder so that the frame it builds once per
// message carries the message's position when it can (a JSON object).
func (rr *recoverRules) frameFunc(build FrameFunc) FrameFunc {
	return func(m canal.Message) (canal.Frame, error) {
		f, err := build(m)
		if err != nil {
			return f, err
		}
		if g, p, ok := rr.position(m); ok {
			if s, ok := splice(f, g, p); ok {
				return s, nil
			}
		}
		return f, nil
	}
}

// reservedRecover reports whether t is one of this file's event types.
func reservedRecover(t string) bool {
	return t == EventRecover || t == EventPosition || t == eventCatchup
}

// positionJSON is {"group": g, "offset": o, "epoch": e} (with more keys after it when
// tail is not "}").
func positionJSON(b []byte, g string, p canal.Position) []byte {
	b = append(b, `{"group":`...)
	b = strconv.AppendQuote(b, g) // group names and epochs are printable ASCII
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, p.Offset, 10)
	b = append(b, `,"epoch":`...)
	return strconv.AppendQuote(b, p.Epoch)
}

// spliced is how a frame that carries a position starts.
var spliced = []byte(`{"` + recoverKey + `":{"group":`)

// splice returns f with the position as its first key, if f is a JSON object text
// frame; ok is false otherwise.
func splice(f canal.Frame, g string, p canal.Position) (canal.Frame, bool) {
	d := f.Data
	if f.Binary || len(d) < 2 || d[0] != '{' {
		return f, false
	}
	if bytes.HasPrefix(d, spliced) {
		return f, true // built by frameFunc already
	}
	rest := bytes.TrimLeft(d[1:], " \t\r\n")
	b := make([]byte, 0, len(d)+len(g)+len(p.Epoch)+48)
	b = append(b, `{"`+recoverKey+`":`...)
	b = positionJSON(b, g, p)
	b = append(b, '}')
	if len(rest) > 0 && rest[0] != '}' {
		b = append(b, ',')
	}
	b = append(b, rest...)
	return canal.Frame{Data: b}, true
}

// positionFrame is the frame of EventPosition.
func positionFrame(g string, p canal.Position) canal.Frame {
	b := append([]byte(`{"type":"`+EventPosition+`",`), positionJSON(nil, g, p)[1:]...)
	return canal.Frame{Data: append(b, '}')}
}

// parseRecover decodes the recover parameter of a query string.
func parseRecover(s *canal.Scope) (map[string]canal.Position, error) {
	if s.RawQuery == "" {
		return nil, nil
	}
	raw := s.Query().Get(RecoverParam)
	if raw == "" {
		return nil, nil
	}
	if len(raw) > MaxRecoverParam {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrRecoverParam, MaxRecoverParam)
	}
	js, err := base64.RawURLEncoding.DecodeString(trimPadding(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrRecoverParam)
	}
	var in map[string][]json.RawMessage
	if err := json.Unmarshal(js, &in); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object of [offset, epoch] pairs", ErrRecoverParam)
	}
	if len(in) > MaxRecoverGroups {
		return nil, fmt.Errorf("%w: %d groups, at most %d", ErrRecoverParam, len(in), MaxRecoverGroups)
	}
	out := make(map[string]canal.Position, len(in))
	for g, pair := range in {
		var off float64
		var epoch string
		if len(pair) != 2 || json.Unmarshal(pair[0], &off) != nil || json.Unmarshal(pair[1], &epoch) != nil ||
			off < 0 || off != math.Trunc(off) || off > 1<<53 || len(epoch) > maxEpoch {
			return nil, fmt.Errorf("%w: group %q: want [offset, epoch]", ErrRecoverParam, g)
		}
		out[g] = canal.Position{Offset: uint64(off), Epoch: epoch}
	}
	return out, nil
}

func trimPadding(s string) string {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	return s
}

// recoveries is one connection's recovered groups.
//
// Concurrency: deliver runs on the layer's goroutines; join, leave and catchup on the
// session's (the hooks'), one at a time.
type recoveries struct {
	rules *recoverRules
	layer canal.HistoryLayer
	raw   canal.Conn
	next  func(canal.Message) bool // the handler's delivery (frames fast path)
	since map[string]canal.Position
	token *byte

	mu sync.RWMutex
	m  map[string]*recovery
}

// recovery is one group of a connection.
type recovery struct {
	group   string
	rec     *history.Recovery
	told    bool        // the first canal.recover was sent
	pending atomic.Bool // a catch-up event is queued
	unwatch func() bool // ends the position check's watch of the connection (recover_check.go)

	mu       sync.Mutex // after rec's own lock (emit runs under it)
	catching bool
	got      []canal.Message
}

// deliver is the layer's delivery of m: a recovered group's message goes through
// its Recovery, anything else straight on.
func (rs *recoveries) deliver(m canal.Message) bool {
	if _, ok := m[canal.PositionKey]; ok {
		if g, _, ok := canal.PositionOf(m); ok {
			rs.mu.RLock()
			r := rs.m[g]
			rs.mu.RUnlock()
			if r != nil {
				if !r.rec.Live(m) {
					rs.kick(r) // a gap, or a new epoch: read the history again
				}
				return true
			}
		}
	}
	return rs.next(m)
}

// emit is the Recovery's output: held back for the session during a catch-up, else
// queued for the client. A message the connection's queue refuses stops the
// Recovery there (Live returns false, and deliver queues a catch-up that reads it
// back from the history).
func (rs *recoveries) emit(r *recovery, m canal.Message) bool {
	r.mu.Lock()
	if r.catching {
		r.got = append(r.got, m) // at most what the history holds
		r.mu.Unlock()
		return true
	}
	r.mu.Unlock()
	return rs.next(m)
}

// overflow closes a connection whose queue cannot even take a catch-up: a hole
// would be silent, a reconnect recovers it.
func (rs *recoveries) overflow() {
	_ = rs.raw.Close(canal.CloseTryAgainLater, "too far behind")
}

// kick queues a catch-up for the session, once.
func (rs *recoveries) kick(r *recovery) {
	if r.pending.Swap(true) {
		return
	}
	if !rs.raw.Deliver(canal.Message{"type": eventCatchup, "token": rs.token, "group": r.group}) {
		rs.overflow()
	}
}

// join starts recovering group before the layer's GroupAdd, so that no live message is
// missed; it returns nil when group is not recovered or already is.
func (rs *recoveries) join(group string) *recovery {
	if rs == nil || !rs.rules.matches(group) {
		return nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m[group] != nil {
		return nil
	}
	r := &recovery{group: group}
	r.rec = history.New(group, rs.since[group], rs.rules.buffer, func(m canal.Message) bool { return rs.emit(r, m) })
	if rs.m == nil {
		rs.m = make(map[string]*recovery)
	}
	rs.m[group] = r
	return r
}

// joined queues the first catch-up of r once the layer's GroupAdd succeeded, or
// forgets r when it failed.
func (rs *recoveries) joined(r *recovery, err error) {
	if r == nil {
		return
	}
	if err != nil {
		rs.leave(r.group)
		return
	}
	rs.kick(r)
}

func (rs *recoveries) leave(group string) {
	if rs == nil {
		return
	}
	rs.mu.Lock()
	r := rs.m[group]
	delete(rs.m, group)
	rs.mu.Unlock()
	if r != nil && r.unwatch != nil {
		r.unwatch()
		rs.rules.check.remove(r)
	}
}

// recoverEvent handles the catch-up event on the session's goroutine: it reads the
// history, then hands the messages caught up to Event in order, then tells the client.
// ok is false for any other event.
func (s *session[T]) recoverEvent(ctx context.Context, t string, m canal.Message) (bool, error) {
	if !reservedRecover(t) {
		return false, nil
	}
	rs := s.c.rs
	if t != eventCatchup || rs == nil || m["token"] != rs.token {
		return true, nil // the server's word, never a layer's
	}
	g, _ := m["group"].(string)
	rs.mu.RLock()
	r := rs.m[g]
	rs.mu.RUnlock()
	if r == nil {
		return true, nil // left meanwhile
	}
	r.mu.Lock()
	r.catching = true
	r.mu.Unlock()
	r.pending.Store(false) // a gap found from now on needs another round
	pos, err := r.rec.Catchup(ctx, rs.layer)
	r.mu.Lock()
	got := r.got
	r.got, r.catching = nil, false
	r.mu.Unlock()

	lost := errors.Is(err, canal.ErrNotRecovered)
	switch {
	case errors.Is(err, canal.ErrNoHistory):
		// No history rule names the group: its messages carry no position, so none
		// was held back. Recovering it is a configuration error, logged once a second.
		rs.leave(g)
		s.h.drops.badEvent(EventRecover, s.c.Scope().RoutePattern, err)
		return true, nil
	case err != nil && !lost:
		return true, &canal.CloseError{Code: canal.CloseTryAgainLater, Reason: "history unavailable", Err: err}
	}
	for _, m := range got {
		if err := s.Event(ctx, nil, m); err != nil {
			return true, err
		}
	}
	if r.told && !lost {
		return true, nil
	}
	if !r.told {
		rs.rules.check.add(rs, r) // live from now on: the position check watches it
	}
	r.told = true
	b := append([]byte(`{"type":"`+EventRecover+`","group":`), strconv.Quote(g)...)
	b = append(b, `,"recovered":`...)
	b = strconv.AppendBool(b, !lost)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, pos.Offset, 10)
	b = append(b, `,"epoch":`...)
	b = append(strconv.AppendQuote(b, pos.Epoch), '}')
	return true, s.c.raw.Send(canal.Frame{Data: b})
}

// carrier is the connection's canal.Conn when Options.Recover is set: while an event
// of a recovered group is handled, the first JSON object frame sent carries its
// position (spliced), and a position frame follows any other frame. It changes
// Send, so it does not Unwrap (see canal.Unwrapper); the frames fast path uses the
// server's Conn directly.
//
// A frame sent from another goroutine while the event's handler runs may carry the
// position in the handler's stead: send a recovered group's frames from the handler.
type carrier struct {
	canal.Conn
	pos atomic.Pointer[carried]
}

type carried struct {
	group string
	p     canal.Position
}

func (c *carrier) Send(f canal.Frame) error {
	cp := c.pos.Swap(nil)
	if cp == nil {
		return c.Conn.Send(f)
	}
	if s, ok := splice(f, cp.group, cp.p); ok {
		return c.Conn.Send(s)
	}
	if err := c.Conn.Send(f); err != nil {
		return err
	}
	return c.Conn.Send(positionFrame(cp.group, cp.p))
}

// carry arms the position of m, when it has one, for the frames its handler sends; the
// returned func sends a position frame if none carried it.
func (s *session[T]) carry(m canal.Message) func() error {
	cr, ok := s.c.raw.(*carrier)
	if !ok {
		return noCarry
	}
	g, p, ok := s.h.recover.position(m)
	if !ok {
		return noCarry
	}
	cr.pos.Store(&carried{group: g, p: p})
	return func() error {
		if cp := cr.pos.Swap(nil); cp != nil {
			return cr.Conn.Send(positionFrame(cp.group, cp.p))
		}
		return nil
	}
}

func noCarry() error { return nil }

// fast reports whether frame f of m may take the frames fast path: it carries m's
// position, or m has none to carry.
func (h *Handler[T]) fast(m canal.Message, f canal.Frame) bool {
	if h.recover == nil {
		return true
	}
	if _, _, ok := h.recover.position(m); !ok {
		return true
	}
	return bytes.HasPrefix(f.Data, spliced) && !f.Binary
}
