// Package router routes WebSocket handshakes by path, as Channels' URLRouter does.
//
// A [Router] is a [canal.Handler] holding an ordered list of routes. Each route is a
// pattern and the handler it selects:
//
//	Channels                                         Canal
//	URLRouter([...])                                 router.New(...)
//	path("ws/chat/<str:room>/", ChatConsumer...)     router.Path("ws/chat/<str:room>/", chat)
//	re_path(r"^ws/(?P<slug>[a-z]+)/$", ...)          router.Regex(`^ws/(?P<slug>[a-z]+)/$`, h)
//	path("ws/", URLRouter([...]))                    router.Path("ws/", router.Must(...))
//	scope["url_route"]["kwargs"]["room"]             scope.Route.String("room")
//
// The rules are Channels' rules:
//
//   - Leading slashes of the path are ignored, and patterns do not start with one.
//   - Routes are tried in order; the first match wins.
//   - A route must match the whole path, with no trailing-slash redirect: the pattern
//     "ws/echo/" does not match "/ws/echo".
//   - A route whose handler is a *Router is nested: its pattern matches a prefix, the
//     inner router routes the rest (leading slashes ignored again), and the captured
//     values of both are merged, the inner ones winning. When the inner router has no
//     match, the outer one goes on with its next route.
//   - Path patterns use Django's converters: str (the default), int, slug, uuid and
//     path. Regex patterns capture their named groups as strings.
//   - The path matched is the percent-decoded one: "/ws/chat/caf%C3%A9/" gives the room
//     "café".
//
// On a match the router stores the captured values in [canal.Scope].Route, appends the
// matched patterns to [canal.Scope].RoutePattern (a low-cardinality label for logs and
// metrics) and calls the route's handler. When nothing matches, the handshake is refused
// with HTTP 404.
//
// A Router is a [canal.Matcher], and so is a canal.Chain (or middleware.Stack) around
// one: the server asks the root handler whether a route matches before it runs any of
// it, so a path no route serves gets 404 before the upgrade whatever the middleware
// order, and consumes no credential (a single-use ticket stays usable). A route whose
// handler is a Matcher (a chain around another router) matches only when that handler
// matches the path too. Middleware applied by hand, mw(router), hides the Router: the
// 404 then comes from Connect, after the middleware ran.
//
// Differences from Channels, all at construction time or in corner cases:
//
//   - Bad patterns are errors from [New], not surprises at the first connection. This
//     includes patterns Django only warns about and that can never match here: a path
//     pattern starting with '/' or written as a regular expression.
//   - Regex patterns are Go regular expressions (RE2: no backreferences or lookaround,
//     linear-time matching) and always match the whole path, or for a nested route a
//     prefix, as if written with '^' and '$'. In Go, \w, \d and \b are ASCII-only; write
//     [\p{L}\p{N}_] to accept the non-ASCII letters Python's \w accepts.
//   - Values of int converters must fit in a Go int; larger ones do not match.
//   - A *Router wrapped in middleware is an ordinary handler, not a nested router, as in
//     Channels: put the middleware on the routes inside, or around the outer router.
package router
