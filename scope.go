package canal

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"
)

// Scope describes one connection, as Channels' scope does. The server fills it before
// the handshake reaches the first Handler; routers add Route and middleware adds User
// and values.
//
// Concurrency: a Scope is written by the server, routers and middleware, in that order,
// before the handler that uses it runs (first-message authentication sets User after the
// accept, but still before the consumer's Connect). From then on it is read-only, except
// for values set with [Key.Set], which are safe for concurrent use, and the user, which
// [Scope.SetUser] may replace (see there).
type Scope struct {
	Type         string      // "websocket", or "sse" for a Server-Sent Events stream
	Path         string      // percent-decoded path, e.g. "/ws/chat/café/"
	RawPath      string      // path as sent, e.g. "/ws/chat/caf%C3%A9/"
	RawQuery     string      // query string without '?'; may carry secrets: never log it
	Headers      http.Header // request headers, canonical keys
	Subprotocols []string    // offered by the client, in the client's order
	Client       string      // remote "ip:port"
	Server       string      // local "ip:port"
	Route        Args        // values captured by routers, typed by their converters
	RoutePattern string      // the matched route patterns joined, e.g. "ws/chat/<str:room>/"
	User         User        // the authenticated user; the zero User is anonymous (see SetUser)

	mu     sync.RWMutex
	values map[any]any
}

// Query parses RawQuery. It parses on each call: keep the result if you need it twice.
func (s *Scope) Query() url.Values {
	v, _ := url.ParseQuery(s.RawQuery)
	return v
}

// Cookie returns the value of the named request cookie, or "" when absent.
func (s *Scope) Cookie(name string) string {
	if s.Headers == nil {
		return ""
	}
	r := http.Request{Header: s.Headers}
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// Header returns the last value of the named header, as Channels' origin check reads it.
func (s *Scope) Header(name string) string {
	vs := s.Headers.Values(name)
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// CurrentUser returns the connection's user as last set: the User field, or what
// [Scope.SetUser] stored since. Unlike the field, it is safe to call from any goroutine
// at any time, for example from a goroutine a consumer started.
func (s *Scope) CurrentUser() User {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.User
}

// SetUser replaces the connection's user after the handshake, as a claims refresh does
// (package consumer calls it for "canal.refresh" events). The change is atomic: readers
// see the old user or the new one whole, never a mix of their fields.
//
// The contract: SetUser is called from the connection's own session methods (its
// Receive, Event or Disconnect, which the server runs one at a time), never from
// another goroutine. Code in those methods may therefore keep reading the User field
// without a lock, as all existing code does, and sees each change from the next call
// on; any other goroutine reads [Scope.CurrentUser]. Treat a User's Attrs as read-only:
// a refresh brings a new map, it never edits the old one in place.
func (s *Scope) SetUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.User = u
}

// Args are the values a router captured from the path: string for str, slug, path and
// regex groups, int for int, and the canonical string form for uuid.
type Args map[string]any

// String returns the captured value as a string ("" when absent).
func (a Args) String(name string) string {
	switch v := a[name].(type) {
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	}
	return ""
}

// Int returns a value captured by an <int:name> converter.
func (a Args) Int(name string) (int, bool) {
	v, ok := a[name].(int)
	return v, ok
}

// Key is a typed key for values middleware attaches to a Scope.
//
//	var tenantKey = canal.NewKey[string]("tenant")
//	tenantKey.Set(scope, "acme")
//	t, ok := tenantKey.Get(scope)
type Key[T any] struct{ name *string }

// NewKey returns a key distinct from every other key; name is for debugging.
func NewKey[T any](name string) Key[T] { return Key[T]{name: &name} }

// Set stores v in s under k.
func (k Key[T]) Set(s *Scope, v T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = make(map[any]any)
	}
	s.values[k.name] = v
}

// Get returns the value stored under k, and whether there was one.
func (k Key[T]) Get(s *Scope) (T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.values[k.name].(T)
	return v, ok
}

// String returns the key's debugging name.
func (k Key[T]) String() string { return *k.name }
