package middleware

import (
	"context"
	"errors"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/ticket"
)

// TicketStore consumes single-use tickets; *ticket.Redis and *ticket.Memory implement it.
//
// Consume returns the user stored under the ticket and deletes it, atomically. It
// returns an error wrapping ticket.ErrInvalid when the ticket is malformed, unknown,
// expired or used, and one wrapping canal.ErrUnavailable when the backing service
// cannot answer. It is called concurrently and must honour ctx.
type TicketStore interface {
	Consume(ctx context.Context, ticket string) (canal.User, error)
}

// TicketOptions configure [Ticket]. The zero value allows all three transports with
// the parameter "ticket", the marker "canal.ticket", a 5 s wait for the first-message
// ticket and a 2 s bound on each Consume.
type TicketOptions struct {
	// Transports are the ways a ticket may arrive; zero means all three.
	Transports Transport
	// Param is the query parameter carrying the ticket; "" means "ticket".
	Param string
	// Subprotocol is the marker subprotocol; "" means "canal.ticket". The bearer entry
	// is Subprotocol + "." + ticket. It must be a valid subprotocol name (an HTTP token).
	Subprotocol string
	// AuthTimeout is how long a first-message client has, from the handshake, to send
	// its ticket frame; zero means 5 s.
	AuthTimeout time.Duration
	// Timeout bounds one Consume call; zero means 2 s. A store that runs out of time
	// fails closed.
	Timeout time.Duration
}

// Ticket returns a middleware that authenticates each connection with a single-use
// ticket from store, the Django "realtime ticket" pattern (see package ticket): a
// logged-in page obtains a short-lived ticket from Django and presents it when it
// opens the WebSocket; the ticket is consumed (read and deleted atomically), its user
// becomes scope.User, and the next handler runs. It is [Token] with the store's
// Consume as the verifier, named for tickets.
//
// A ticket may arrive three ways, chosen with [TicketOptions.Transports]:
//
//   - Query (TransportQuery): ?ticket=T (the parameter is Param), consumed before
//     the upgrade. Every pair with that key is then removed from scope.RawQuery, so
//     a consumer that logs its query string cannot leak the ticket; the other pairs
//     are kept as sent. The first non-empty value counts, percent-decoded; an empty
//     one counts as no ticket.
//   - Subprotocol (TransportSubprotocol): the client offers the marker and a bearer
//     entry, new WebSocket(url, ["canal.ticket", "canal.ticket." + T]), plus any
//     application subprotocols (the base64url form of [BearerProtocol] works too).
//     The first non-empty bearer entry is consumed before the upgrade. Bearer entries
//     are always removed from scope.Subprotocols and from the Sec-Websocket-Protocol
//     header (rewritten from the remaining entries), even when this transport is
//     disabled, so the ticket never reaches the application.
//   - First message (TransportFirstMessage): when neither of the above carried a
//     ticket, the middleware accepts the socket itself and waits for the client's
//     first frame, a text frame holding {"ticket": "T"} (an optional "type" field,
//     e.g. "auth", is ignored) or the bare ticket. On success the next handler's
//     Connect runs on the session goroutine with a Conn whose Accept is a no-op (the
//     socket is already open, so the application's AcceptOptions are ignored), and
//     the session it returns gets every later frame and event. Layer events that
//     arrive before the ticket are dropped. The AuthTimeout runs from the handshake
//     to the first frame; a frame that loses the race with it consumes nothing.
//
// A connection that carries no ticket but was already authenticated by an earlier
// middleware (scope.User set, e.g. by [Session] from the Django session cookie) goes
// to the next handler as it is, so Stack(origin, session, ticket) accepts either. A
// ticket, when present, is always checked and its user wins.
//
// A query ticket wins over a bearer entry; the loser is not consumed. When the client
// offered the marker, the 101 names it unless the application accepts one of its own
// offered subprotocols: browsers fail a connection whose offered subprotocols the
// server ignores. In first-message mode the middleware accepts with the marker when it
// was offered and with no subprotocol otherwise, so a first-message browser client
// that offers subprotocols must offer the marker.
//
// A path no route serves never reaches Ticket when the root handler is a canal.Chain
// (or [Stack]) around a router: the server answers 404 first, and the ticket stays
// unused (see canal.Matcher).
//
// Outcomes (statuses before the upgrade, close codes after it; the reason, sent to
// the client in X-Canal-Reason or the close frame, in quotes):
//
//	Transport        Condition                                           Answer
//	query, subproto  valid ticket                                        next handler runs
//	query, subproto  invalid, forged, malformed, expired or used ticket  HTTP 403 "invalid ticket"
//	query            value that cannot be percent-decoded                HTTP 403 "malformed ticket"
//	subproto         "-b64." entry that is not base64url                 HTTP 403 "malformed ticket"
//	query, subproto  store unavailable                                   HTTP 503 "ticket store unavailable"
//	query, subproto  store error, Consume timeout                        HTTP 503 "ticket store failed"
//	none             no ticket and TransportFirstMessage disabled        HTTP 403 "missing ticket"
//	none             no ticket on an event stream (Scope.Type "sse")     HTTP 403 "missing ticket"
//	first message    valid ticket                                        next handler runs
//	first message    invalid, forged, malformed, expired or used ticket  close 4401 "invalid ticket"
//	first message    binary, not a ticket, no "ticket", over 4 KiB       close 4401 "ticket expected"
//	first message    no frame within AuthTimeout                         close 4408 "authentication timeout"
//	first message    store unavailable, store error, Consume timeout     close 1011 "authentication unavailable"
//	first message    next returns *canal.RejectError 401, 403, 404       close 4401, 4403, 4404, its Reason
//	first message    next returns *canal.RejectError other 400–499       close 4000+status, its Reason
//	first message    next returns *canal.RejectError 503                 close 1013, its Reason
//	first message    next returns *canal.RejectError any other status    close 1011, its Reason
//	first message    next returns *canal.CloseError                      its code and reason
//	first message    next returns another error, or no session           close 1011, no reason
//
// The last rows are [canal.CloseFor], which consumer.Handler also uses for the code its
// Disconnect gets when Connect fails after the accept: a consumer refused after a
// first-message ticket has Disconnect(4403) run once, and the client sees 4403 too.
// The middleware's own session then forwards no Disconnect (there is no inner session).
//
// Authentication fails closed: a store that cannot answer never lets anyone in. A
// store that returns a user who is not Authenticated, with a nil error, counts as an
// invalid ticket. The ticket never appears in a RejectError or CloseError (reason or
// error text, store errors included: the exact ticket is scrubbed from them), nor in
// anything the middleware logs; it logs nothing itself.
//
// Concurrency: the returned middleware is immutable and safe for concurrent use, and
// store is called concurrently. The first-message session relies on the server's
// contract that a connection's Session methods are called one at a time; its auth
// timer runs on a goroutine of its own and only calls Conn.Close, which is safe
// concurrently, and it is stopped when the first frame arrives or the connection
// ends. In first-message mode scope.User is written after the outer Connect returned,
// on the session goroutine, but before the next handler sees the connection.
//
// Ticket returns an error when store is nil, a duration is negative, Transports has
// unknown bits, Param is not a plain query key or Subprotocol is not a valid
// subprotocol name.
func Ticket(store TicketStore, opts TicketOptions) (canal.Middleware, error) {
	if store == nil {
		return nil, errors.New("middleware: Ticket: nil store")
	}
	a, err := newCredentialAuth(&credentialAuth{
		name: "Ticket", what: "ticket", backend: "ticket store",
		verify: store.Consume, invalid: ticket.ErrInvalid,
	}, credentialOptions(opts))
	if err != nil {
		return nil, err
	}
	return a.middleware(), nil
}
