package consumer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/userjson"
)

// The reserved layer events every consumer handles itself, before Options.Events:
// they reach a user's connections through the user's group (UserGroup), from Go
// (DisconnectUser, RefreshUser) or from Django (django_canal.realtime), which sends
// them with a plain channel_layer.group_send.
const (
	// EventDisconnect closes the connection: {"type": "canal.disconnect", "code":
	// 4403, "reason": "logged out"}. A missing code, or one an application may not
	// send (canal.ValidAppCloseCode), closes with DefaultDisconnectCode.
	EventDisconnect = "canal.disconnect"
	// EventRefresh replaces the connection's user: {"type": "canal.refresh", "user":
	// "<JSON object>"}, the object in the ticket's format (id, username, claims).
	// A user with another ID, or a value that does not decode, is dropped and
	// counted in Stats.BadEvents.
	EventRefresh = "canal.refresh"
)

// DefaultDisconnectCode is the close code of a disconnect that names none: 4403, an
// application code that reads as HTTP's Forbidden.
const DefaultDisconnectCode = 4403

// userGroupPrefix starts every per-user group. IDs that are not a valid group-name
// tail are hashed under hashedUserGroupPrefix; the two differ at the eleventh byte
// ('.' and 'h'), so no ID of one form can name a group of the other.
const (
	userGroupPrefix       = "canal.user."
	hashedUserGroupPrefix = "canal.userh."
)

// UserGroup is the channel-layer group of the user with primary key id: every
// authenticated connection of a consumer joins it (unless Options.NoUserGroup), in
// every process that shares the layer. An id of letters, digits, '-', '_' and '.' (an
// integer or a UUID, as Django's primary keys are) gives "canal.user.<id>"; any other
// id, or one too long for a group name, gives "canal.userh.<hex SHA-256 of id>".
// django_canal.realtime.user_group computes the same name. It returns "" for "".
func UserGroup(id string) string {
	if id == "" {
		return ""
	}
	if len(userGroupPrefix)+len(id) <= 99 && plainName(id) {
		return userGroupPrefix + id
	}
	sum := sha256.Sum256([]byte(id))
	return hashedUserGroupPrefix + hex.EncodeToString(sum[:])
}

// plainName reports whether s is made of group-name bytes only: [a-zA-Z0-9_.-].
func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ErrNoUser is returned for a user call without a user ID.
var ErrNoUser = errors.New("consumer: no user ID")

// DisconnectUser closes every connection of user id, in every process on layer, with
// code (DefaultDisconnectCode when 0) and reason. It returns once the layer took the
// message; each connection closes when its process delivers it. Connections of the
// user that are still in their handshake (Connect not yet returned) may miss it.
func DisconnectUser(ctx context.Context, layer canal.Layer, id string, code int, reason string) error {
	if code == 0 {
		code = DefaultDisconnectCode
	}
	if !canal.ValidAppCloseCode(code) {
		return fmt.Errorf("consumer: DisconnectUser: close code %d is not one an application may send", code)
	}
	if len(reason) > 123 {
		return fmt.Errorf("consumer: DisconnectUser: reason of %d bytes; a close frame holds 123", len(reason))
	}
	return sendUser(ctx, layer, id, canal.Message{"type": EventDisconnect, "code": code, "reason": reason})
}

// SendToUser sends msg, a layer event, to every connection of user id in every process
// on layer: each consumer handles it as any group event (Options.Events, Frames or its
// Event method). The reserved types EventDisconnect and EventRefresh are refused here;
// use DisconnectUser and RefreshUser.
func SendToUser(ctx context.Context, layer canal.Layer, id string, msg canal.Message) error {
	if err := msg.ValidateType(); err != nil {
		return fmt.Errorf("consumer: SendToUser: %w", err)
	}
	if reserved(msg.Type()) {
		return fmt.Errorf("consumer: SendToUser: event type %q is reserved", msg.Type())
	}
	return sendUser(ctx, layer, id, msg)
}

// RefreshUser replaces the user of every connection of u.ID, in every process on
// layer, with u: its Scope.User changes atomically and the consumer's UserChanged hook
// runs, so permission checks follow without a reconnect. u carries the complete new
// claims, not a difference.
func RefreshUser(ctx context.Context, layer canal.Layer, u canal.User) error {
	b, err := encodeUser(u)
	if err != nil {
		return fmt.Errorf("consumer: RefreshUser: %w", err)
	}
	return sendUser(ctx, layer, u.ID, canal.Message{"type": EventRefresh, "user": string(b)})
}

func sendUser(ctx context.Context, layer canal.Layer, id string, msg canal.Message) error {
	if layer == nil {
		return ErrNoLayer
	}
	if id == "" {
		return ErrNoUser
	}
	return layer.GroupSend(ctx, UserGroup(id), msg)
}

// encodeUser writes u as a ticket value: the claims with "id" and "username" added.
func encodeUser(u canal.User) ([]byte, error) {
	if u.ID == "" {
		return nil, ErrNoUser
	}
	if u.Username == "" {
		return nil, errors.New("user has no username")
	}
	m := make(map[string]any, len(u.Attrs)+2)
	for k, v := range u.Attrs {
		if k == "id" || k == "username" {
			return nil, fmt.Errorf("attribute %q collides with a user field", k)
		}
		m[k] = v
	}
	m["id"], m["username"] = u.ID, u.Username
	return json.Marshal(m)
}

func reserved(t string) bool {
	return t == EventDisconnect || t == EventRefresh || t == EventReauth || t == eventLifetime
}

// UserChanger is the hook told of a claims refresh (EventRefresh) or an in-band
// re-authorization (EventReauth, Options.MaxAge), after Scope.User
// holds new and the groups' presence entries were updated. It runs like an event
// handler: one at a time with the other hooks, and its error closes the connection.
// A consumer that filters by permission re-checks here, or simply reads Scope.User at
// each event.
type UserChanger interface {
	UserChanged(ctx context.Context, c *Conn, old, new canal.User) error
}

// reservedEvent handles the events of this file; ok is false for any other type.
func (s *session[T]) reservedEvent(ctx context.Context, t string, m canal.Message) (bool, error) {
	switch t {
	case EventDisconnect:
		code := DefaultDisconnectCode
		if v, ok := asInt(m["code"]); ok && canal.ValidAppCloseCode(v) {
			code = v
		}
		reason := m.String("reason")
		if len(reason) > 123 {
			reason = ""
		}
		return true, s.c.Close(code, reason)
	case EventRefresh:
		return true, s.refresh(ctx, m)
	case eventLifetime:
		return true, s.lifetimeEvent(m)
	case EventReauth:
		return true, nil // the client's word, never a layer's
	}
	return false, nil
}

func (s *session[T]) refresh(ctx context.Context, m canal.Message) error {
	route := s.c.Scope().RoutePattern
	raw, ok := m["user"].(string)
	if !ok {
		s.h.drops.badEvent(EventRefresh, route, errors.New(`"user" is not a JSON string`))
		return nil
	}
	u, err := userjson.Decode([]byte(raw))
	if err != nil {
		s.h.drops.badEvent(EventRefresh, route, err)
		return nil
	}
	if u.ID != s.c.Scope().User.ID {
		// A hashed group name collided, or someone sent it by hand: never change who a
		// connection is, only what they may do.
		s.h.drops.badEvent(EventRefresh, route, errors.New("the user ID differs from the connection's"))
		return nil
	}
	return s.changeUser(ctx, u, EventRefresh)
}

// changeUser makes u the connection's user (same ID), updates its presence entries
// and runs the UserChanged hook; why names the cause for the logs.
func (s *session[T]) changeUser(ctx context.Context, u canal.User, why string) error {
	scope := s.c.Scope()
	old := scope.User
	scope.SetUser(u)
	s.c.retrack(ctx)
	if uc, ok := any(s.inst).(UserChanger); ok {
		return s.eventError(why, uc.UserChanged(ctx, s.c, old, u))
	}
	return nil
}
