package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/canal-rt/canal"
)

// Connection lifetime (Options.MaxAge): once a connection is MaxAge old, the consumer
// asks its client for a fresh credential over the socket,
//
//	server → client  {"type": "canal.reauth", "within": 30}
//	client → server  {"type": "canal.reauth", "credential": "<a fresh ticket>"}
//
// and closes with CloseReauthRequired (4401) when none that Options.Reauthorize accepts
// for the same user comes within ReauthGrace. An accepted credential replaces the
// connection's user, as a refresh does (the UserChanged hook runs), and starts a new
// MaxAge. A client may also send one before being asked. The browser side:
//
//	socket.onmessage = async (ev) => {
//	  const data = JSON.parse(ev.data);
//	  if (data.type === "canal.reauth") {
//	    socket.send(JSON.stringify({type: "canal.reauth", credential: await freshTicket()}));
//	    return;
//	  }
//	  // ... the application's frames
//	};
const (
	// EventReauth is the "type" of the request the server sends and of the answer
	// the client sends back.
	EventReauth = "canal.reauth"
	// CloseReauthRequired closes a connection whose re-authorization did not come in
	// time, failed, or named another user: 4401, HTTP's Unauthorized.
	CloseReauthRequired = 4401
	// DefaultReauthGrace is Options.ReauthGrace's default.
	DefaultReauthGrace = 30 * time.Second
	// eventLifetime is the timer's own event, told apart from any layer message by
	// a Go pointer no peer can send.
	eventLifetime = "canal.lifetime"
	// reauthTimeout bounds one Reauthorize call.
	reauthTimeout = 5 * time.Second
	// redeliverAfter is how long a timer waits to try again when the connection's
	// event queue was full.
	redeliverAfter = time.Second
	// maxCredential bounds a client's re-authorization frame.
	maxCredential = 4096
)

// lifetime is one connection's MaxAge state. The session's methods, which the server
// runs one at a time, own every field; timers only Deliver events.
type lifetime struct {
	token   *byte // identifies this connection's timer events
	seq     int   // the current timer; older ones are ignored
	pending bool  // a request was sent and no answer accepted yet
	timer   *time.Timer
}

// startLifetime arms the first MaxAge timer.
func (s *session[T]) startLifetime() {
	if s.h.opts.MaxAge <= 0 {
		return
	}
	s.life = &lifetime{token: new(byte)}
	s.arm(s.h.opts.MaxAge, "due")
}

// arm replaces the running timer with one that delivers phase after d.
func (s *session[T]) arm(d time.Duration, phase string) {
	l := s.life
	if l.timer != nil {
		l.timer.Stop()
	}
	l.seq++
	m := canal.Message{"type": eventLifetime, "token": l.token, "seq": l.seq, "phase": phase}
	raw := s.c.raw
	var fire func()
	fire = func() {
		if raw.Deliver(m) || raw.Context().Err() != nil {
			return
		}
		time.AfterFunc(redeliverAfter, fire) // queue full: the socket is busy, not gone
	}
	l.timer = time.AfterFunc(d, fire)
}

func (s *session[T]) stopLifetime() {
	if s.life != nil && s.life.timer != nil {
		s.life.timer.Stop()
	}
}

// lifetimeEvent handles the timer's events: ask at "due", close at "expired".
func (s *session[T]) lifetimeEvent(m canal.Message) error {
	l := s.life
	if l == nil || m["token"] != l.token {
		return nil // not ours: a peer cannot forge the pointer
	}
	if seq, _ := m["seq"].(int); seq != l.seq {
		return nil // superseded by an answer that came meanwhile
	}
	switch m["phase"] {
	case "due":
		l.pending = true
		grace := s.h.opts.ReauthGrace
		s.arm(grace, "expired")
		within := int(math.Ceil(grace.Seconds()))
		return s.c.SendJSON(map[string]any{"type": EventReauth, "within": within})
	case "expired":
		if l.pending {
			return s.c.Close(CloseReauthRequired, "re-authorization required")
		}
	}
	return nil
}

// reauthFrame reports whether f is a client's re-authorization, and handles it.
func (s *session[T]) reauthFrame(ctx context.Context, f canal.Frame) (bool, error) {
	if s.life == nil || f.Binary || len(f.Data) > maxCredential || !bytes.Contains(f.Data, []byte(EventReauth)) {
		return false, nil
	}
	var in struct {
		Type       string `json:"type"`
		Credential string `json:"credential"`
	}
	if json.Unmarshal(f.Data, &in) != nil || in.Type != EventReauth {
		return false, nil
	}
	if in.Credential == "" {
		return true, &canal.CloseError{Code: CloseReauthRequired, Reason: "re-authorization without a credential"}
	}
	rctx, cancel := context.WithTimeout(ctx, reauthTimeout)
	u, err := s.h.opts.Reauthorize(rctx, in.Credential)
	cancel()
	switch {
	case errors.Is(err, canal.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		// The verifier's store is down, not the credential bad: the client may try
		// again within the grace period (still running).
		return true, s.c.SendJSON(map[string]any{"type": EventReauth, "error": "unavailable"})
	case err != nil || !u.Authenticated():
		// Never the error text: it may quote the credential.
		return true, &canal.CloseError{Code: CloseReauthRequired, Reason: "re-authorization failed"}
	case u.ID != s.c.Scope().User.ID:
		return true, &canal.CloseError{Code: CloseReauthRequired, Reason: "re-authorization for another user"}
	}
	s.life.pending = false
	s.arm(s.h.opts.MaxAge, "due")
	return true, s.changeUser(ctx, u, EventReauth)
}
