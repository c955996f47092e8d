// Package middleware holds Canal's handshake middleware: origin checks, Django ticket,
// session-cookie and token authentication (any auth.Verifier; the credential in the
// query string, a subprotocol or the first message), and panic recovery. Each is a
// canal.Middleware, a func(next canal.Handler) canal.Handler in the style of chi, and
// they compose with [Stack] or canal.Chain.
//
// The Django Channels equivalents:
//
//   - [Origin] is channels.security.websocket.OriginValidator: the same matching
//     rules, with patterns checked at construction and two fixes ("localhost:8000"
//     matches localhost; "*.example.com" is a subdomain wildcard instead of a
//     pattern that never matches).
//   - [AllowedHosts] is AllowedHostsOriginValidator: the allow-list is Django's
//     ALLOWED_HOSTS, with its DEBUG defaults.
//   - [Token] is the token middleware Channels users write by hand and place where
//     AuthMiddlewareStack would go, for any credential an auth.Verifier checks (DRF
//     tokens, simplejwt access tokens, django.core.signing tokens, ...). Browsers
//     cannot set an Authorization header on a WebSocket, so the token travels in the
//     query string (?token=T), in Sec-WebSocket-Protocol (["canal.token",
//     "canal.token."+T], or base64url after "canal.token-b64." for tokens with ':' or
//     other separators: [BearerProtocol]), or in the first message (the bare token,
//     or {"token": T}). It fails closed: a verifier that cannot answer gives 503 (or
//     close 1011), never a connection.
//   - [Ticket] authorizes Django users with the single-use tickets Django writes to
//     Redis (package ticket; python/ for the Django side). It is Token with the
//     store's Consume as verifier: the same three transports, named for tickets
//     (?ticket=T, ["canal.ticket", "canal.ticket."+T], {"ticket": T}). The ticket is
//     consumed atomically, stripped from the scope, and never logged.
//   - [Session] is AuthMiddlewareStack: Django's session cookie, checked by an
//     auth.Verifier; auth.Django with Kind "session" asks the site itself through
//     django_canal's credential endpoint, so any SESSION_ENGINE works. Put an origin
//     check before it: cookies make a socket open to cross-site hijacking. A
//     session of nobody passes as anonymous (403 with Required), and a [Ticket]
//     later in the stack lets an already authenticated connection through without
//     a ticket.
//   - [Recover] gives Daphne's answers to exceptions (500 before the accept, close
//     1011 after it) at once, logged with the route, and keeps serving everyone else.
//
// Refusals before the upgrade are *canal.RejectError values: the server answers with
// their status (403 for a refused origin or token, 503 for an unavailable token store,
// 500 for a panic) and sends their reason to the client (X-Canal-Reason and a
// text/plain body: "invalid token", "missing ticket", ...), which never contains a
// credential. After the upgrade (a first-message credential) a refusal is a close
// frame, 4401, 4403, 4408 or canal.CloseFor's code for the next handler's refusal, with
// the reason in it: the only answer a browser page's code can read.
//
// Put authentication in a canal.Chain or [Stack] around the router: the server then
// asks the router first (canal.Matcher), and a path with no route gets 404 before any
// middleware runs, consuming no ticket and waiting for no first message.
//
// A typical stack, outermost first:
//
//	origins, err := middleware.AllowedHosts(allowedHosts, debug)
//	// ...
//	auth, err := middleware.Ticket(ticket.NewMemory(ticket.MemoryOptions{}), middleware.TicketOptions{})
//	// ...
//	h := middleware.Stack(middleware.Recover(nil), origins, auth)(router)
//
// All middleware here are immutable once built and safe for concurrent use by any
// number of connections.
//
// A middleware that hands the next handler a Conn of its own (Ticket does, to choose
// the marker subprotocol or to make Accept a no-op after a first-message ticket)
// hides the server Conn's optional capabilities, among them canal.FrameDeliverer, the
// encode-once path of consumer.Options.Frames. Give such a wrapper an Unwrap()
// canal.Conn method returning the wrapped Conn, as every wrapper here has, when its
// Send and Deliver are the wrapped Conn's; see canal.Unwrapper. A wrapper that
// changes Send or Deliver must not Unwrap.
package middleware
