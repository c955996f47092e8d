package router

import (
	"context"
	"fmt"
	"strings"

	"github.com/canal-rt/canal"
)

// Route pairs a pattern with the handler it selects. Build one with [Path] or [Regex];
// [New] checks it.
type Route struct {
	pattern string
	h       canal.Handler
	regex   bool
}

// Path returns a route with a Django path() pattern: literal text and captures written
// <converter:name>, where converter is one of
//
//	str   a non-empty segment without '/' (the default: <name> is <str:name>)
//	int   ASCII digits, captured as a Go int
//	slug  ASCII letters, digits, '-' and '_'
//	uuid  a lowercase UUID such as 075194d3-6885-417e-a8a8-6c931e272f00, captured as that string
//	path  any non-empty text, '/' included
//
// Names are identifiers, unique within the pattern. The pattern does not start with '/'.
func Path(pattern string, h canal.Handler) Route {
	return Route{pattern: pattern, h: h}
}

// Regex returns a route with a Go regular expression, like Django's re_path(). Named
// groups, (?P<name>...) or (?<name>...), are captured as strings; groups that did not
// take part in the match are left out, and unnamed groups are ignored. The expression
// must match the whole path (a prefix for a nested router) whether or not it is written
// with '^' and '$'.
func Regex(pattern string, h canal.Handler) Route {
	return Route{pattern: pattern, h: h, regex: true}
}

// Pattern returns the route's pattern as written.
func (rt Route) Pattern() string { return rt.pattern }

// PatternError reports a route that [New] refused.
type PatternError struct {
	Pattern string // the pattern as written
	Reason  string // what is wrong with it
	Err     error  // the cause, e.g. the regexp package's error
}

func (e *PatternError) Error() string {
	msg := fmt.Sprintf("router: route %q: %s", e.Pattern, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *PatternError) Unwrap() error { return e.Err }

// Router routes a handshake to the first route matching the connection's path.
//
// Concurrency: a Router is immutable once New returns it and is safe for concurrent
// use; one Router serves every connection. The zero Router matches nothing.
type Router struct {
	routes []route
	// leaves flattens the handlers reachable from this router, nested ones included,
	// with their joined patterns, so a match needs no string building.
	leaves []leaf
}

type leaf struct {
	pattern string
	h       canal.Handler
}

// New returns a router trying routes in order. It compiles every pattern once and
// returns a *[PatternError] for the first one that is invalid.
func New(routes ...Route) (*Router, error) {
	r := &Router{routes: make([]route, 0, len(routes))}
	for _, rt := range routes {
		c, err := compile(rt)
		if err != nil {
			return nil, err
		}
		c.base = len(r.leaves)
		if c.sub != nil {
			for _, l := range c.sub.leaves {
				r.leaves = append(r.leaves, leaf{pattern: rt.pattern + l.pattern, h: l.h})
			}
		} else {
			r.leaves = append(r.leaves, leaf{pattern: rt.pattern, h: rt.h})
		}
		r.routes = append(r.routes, c)
	}
	return r, nil
}

// Must is like New but panics on an invalid pattern. It suits package-level routers,
// whose patterns are constants.
func Must(routes ...Route) *Router {
	r, err := New(routes...)
	if err != nil {
		panic(err)
	}
	return r
}

// Connect routes the handshake by c.Scope().Path. On a match it merges the captured
// values into Scope.Route, appends the matched patterns to Scope.RoutePattern and
// returns the route handler's Connect. Otherwise it refuses the handshake with 404.
func (r *Router) Connect(ctx context.Context, c canal.Conn) (canal.Session, error) {
	s := c.Scope()
	// Captures of typical routes fit here, on the stack.
	var buf [8]capture
	i, caps, ok := r.match(strings.TrimLeft(s.Path, "/"), buf[:0])
	if !ok {
		// The path stays out of the reason: it may carry secrets, and the server logs
		// the request itself.
		return nil, canal.Reject(404, "no route for path")
	}
	if len(caps) > 0 {
		if s.Route == nil {
			s.Route = make(canal.Args, len(caps))
		}
		store(s.Route, caps)
	}
	l := &r.leaves[i]
	s.RoutePattern += l.pattern
	return l.h.Connect(ctx, c)
}

// Matches implements canal.Matcher: it reports whether a route matches s.Path and, when
// the matched handler is itself a canal.Matcher (a chain around another router, say),
// whether that handler matches too. It writes nothing to s and allocates nothing, so
// the server asks it before any middleware runs and answers 404 for a path no route
// serves.
func (r *Router) Matches(s *canal.Scope) bool {
	var buf [8]capture
	i, _, ok := r.match(strings.TrimLeft(s.Path, "/"), buf[:0])
	if !ok {
		return false
	}
	return canal.Matches(r.leaves[i].h, s)
}

// Match reports the handler Connect would call for path, with the values it would
// capture (nil when none) and the joined pattern of the matched routes.
func (r *Router) Match(path string) (h canal.Handler, args canal.Args, pattern string, ok bool) {
	var buf [8]capture
	i, caps, ok := r.match(strings.TrimLeft(path, "/"), buf[:0])
	if !ok {
		return nil, nil, "", false
	}
	if len(caps) > 0 {
		args = make(canal.Args, len(caps))
		store(args, caps)
	}
	return r.leaves[i].h, args, r.leaves[i].pattern, true
}

// match finds the leaf matching s, whose leading slashes are already stripped. It
// appends the captured values to caps, and on failure returns caps as it got it.
func (r *Router) match(s string, caps []capture) (int, []capture, bool) {
	n := len(caps)
	for k := range r.routes {
		rt := &r.routes[k]
		rest, more, ok := rt.match(s, caps)
		caps = more
		if ok {
			if rt.sub == nil {
				return rt.base, caps, true
			}
			// Channels strips leading slashes at every level.
			i, more, ok := rt.sub.match(strings.TrimLeft(rest, "/"), caps)
			caps = more
			if ok {
				return rt.base + i, caps, true
			}
		}
		// Drop what a failed route captured, so it cannot leak into the next one.
		caps = caps[:n]
	}
	return 0, caps, false
}

// capture is a captured value before it is boxed into Args, which happens only once
// the whole match has succeeded.
type capture struct {
	name  string
	str   string
	n     int
	isInt bool
}

// store merges caps into a; later captures (inner routers) win.
func store(a canal.Args, caps []capture) {
	for _, c := range caps {
		if c.isInt {
			a[c.name] = c.n
		} else {
			a[c.name] = c.str
		}
	}
}
