package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
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

// Transport is a set of the ways a client may present a ticket to [Ticket].
type Transport uint8

// The transports. Combine them with |; the zero value means all three.
const (
	// TransportQuery reads the ticket from the query string: ws://host/ws/?ticket=T.
	TransportQuery Transport = 1 << iota
	// TransportSubprotocol reads the ticket from a bearer subprotocol entry, for
	// browsers, which cannot set headers on a WebSocket:
	// new WebSocket(url, ["canal.ticket", "canal.ticket." + T]).
	TransportSubprotocol
	// TransportFirstMessage accepts the socket first and reads the ticket from the
	// client's first frame: {"type": "auth", "ticket": T}.
	TransportFirstMessage

	allTransports = TransportQuery | TransportSubprotocol | TransportFirstMessage
)

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

// Defaults of [TicketOptions].
const (
	defaultTicketParam       = "ticket"
	defaultTicketSubprotocol = "canal.ticket"
	defaultAuthTimeout       = 5 * time.Second
	defaultConsumeTimeout    = 2 * time.Second
	// maxAuthFrame bounds the first-message frame: a ticket is at most ticket.MaxLen
	// bytes, so anything much larger is not an authentication frame and is refused
	// without being parsed.
	maxAuthFrame = 4096
)

// Ticket returns a middleware that authenticates each connection with a single-use
// ticket from store, the Django "realtime ticket" pattern (see package ticket): a
// logged-in page obtains a short-lived ticket from Django and presents it when it
// opens the WebSocket; the ticket is consumed (read and deleted atomically), its user
// becomes scope.User, and the next handler runs.
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
//     application subprotocols. The first non-empty bearer entry is consumed before
//     the upgrade. Bearer entries are always removed from scope.Subprotocols and from
//     the Sec-Websocket-Protocol header (rewritten from the remaining entries), even
//     when this transport is disabled, so the ticket never reaches the application.
//   - First message (TransportFirstMessage): when neither of the above carried a
//     ticket, the middleware accepts the socket itself and waits for the client's
//     first frame, a text frame holding {"ticket": "T"} (an optional "type" field,
//     e.g. "auth", is ignored). On success the next handler's Connect runs on the
//     session goroutine with a Conn whose Accept is a no-op (the socket is already
//     open, so the application's AcceptOptions are ignored), and the session it
//     returns gets every later frame and event. Layer events that arrive before the
//     ticket are dropped. The AuthTimeout runs from the handshake to the first
//     frame; a frame that loses the race with it consumes nothing.
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
// Outcomes (statuses before the upgrade, close codes after it):
//
//	Transport        Condition                                           Answer
//	query, subproto  valid ticket                                        next handler runs
//	query, subproto  invalid, forged, malformed, expired or used ticket  HTTP 403
//	query            value that cannot be percent-decoded                HTTP 403
//	query, subproto  store unavailable, store error, Consume timeout     HTTP 503
//	none             no ticket and TransportFirstMessage disabled        HTTP 403
//	none             no ticket on an event stream (Scope.Type "sse")     HTTP 403
//	first message    valid ticket                                        next handler runs
//	first message    invalid, forged, malformed, expired or used ticket  close 4401
//	first message    binary frame, not JSON, no "ticket", over 4 KiB     close 4401
//	first message    no frame within AuthTimeout                         close 4408
//	first message    store unavailable, store error, Consume timeout     close 1011
//	first message    next returns *canal.RejectError 401, 403, 404       close 4401, 4403, 4404
//	first message    next returns *canal.RejectError other 400–499       close 4000+status
//	first message    next returns *canal.RejectError 503                 close 1013
//	first message    next returns *canal.RejectError any other status    close 1011
//	first message    next returns *canal.CloseError                      its code
//	first message    next returns another error, or no session           close 1011
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
	a, err := newTicketAuth(store, opts)
	if err != nil {
		return nil, err
	}
	return func(next canal.Handler) canal.Handler {
		if next == nil {
			panic("middleware: Ticket: nil next handler")
		}
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			return a.connect(ctx, c, next)
		})
	}, nil
}

// ticketAuth is immutable after construction, hence safe for concurrent use.
type ticketAuth struct {
	store       TicketStore
	transports  Transport
	param       string
	marker      string
	bearer      string // marker + "."
	authTimeout time.Duration
	timeout     time.Duration
}

func newTicketAuth(store TicketStore, opts TicketOptions) (*ticketAuth, error) {
	if store == nil {
		return nil, errors.New("middleware: Ticket: nil store")
	}
	if opts.Transports&^allTransports != 0 {
		return nil, fmt.Errorf("middleware: Ticket: unknown transport bits %#x", uint8(opts.Transports&^allTransports))
	}
	if opts.AuthTimeout < 0 {
		return nil, fmt.Errorf("middleware: Ticket: negative AuthTimeout %v", opts.AuthTimeout)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("middleware: Ticket: negative Timeout %v", opts.Timeout)
	}
	a := &ticketAuth{
		store:       store,
		transports:  opts.Transports,
		param:       opts.Param,
		marker:      opts.Subprotocol,
		authTimeout: opts.AuthTimeout,
		timeout:     opts.Timeout,
	}
	if a.transports == 0 {
		a.transports = allTransports
	}
	if a.param == "" {
		a.param = defaultTicketParam
	}
	if strings.ContainsAny(a.param, "&=;#?% +") {
		return nil, fmt.Errorf("middleware: Ticket: invalid query parameter %q", a.param)
	}
	if a.marker == "" {
		a.marker = defaultTicketSubprotocol
	}
	if !httpToken(a.marker) {
		return nil, fmt.Errorf("middleware: Ticket: invalid marker subprotocol %q (want an HTTP token such as %q)", a.marker, defaultTicketSubprotocol)
	}
	a.bearer = a.marker + "."
	if a.authTimeout == 0 {
		a.authTimeout = defaultAuthTimeout
	}
	if a.timeout == 0 {
		a.timeout = defaultConsumeTimeout
	}
	return a, nil
}

// connect runs on the handshake goroutine, where the scope may still be written.
func (a *ticketAuth) connect(ctx context.Context, c canal.Conn, next canal.Handler) (canal.Session, error) {
	s := c.Scope()
	var tkt, raw string
	found := false
	if a.transports&TransportQuery != 0 {
		v, r, f, ok := queryParam(s.RawQuery, a.param)
		s.RawQuery = removeQueryParam(s.RawQuery, a.param)
		if !ok {
			a.stripBearer(s)
			return nil, &canal.RejectError{Status: http.StatusForbidden, Reason: "malformed ticket", Err: ticket.ErrInvalid}
		}
		tkt, raw, found = v, r, f
	}
	if b := a.stripBearer(s); !found && b != "" && a.transports&TransportSubprotocol != 0 {
		tkt, raw, found = b, b, true
	}
	marker := slices.Contains(s.Subprotocols, a.marker)

	if found {
		u, err := a.consume(ctx, tkt, raw)
		if err != nil {
			return nil, a.rejection(err)
		}
		s.User = u
		if !marker {
			return next.Connect(ctx, c)
		}
		mc := &markerConn{Conn: c, marker: a.marker}
		sess, err := next.Connect(ctx, mc)
		if err == nil && sess != nil && !c.Accepted() {
			// The session may accept later, from an event: it must see mc too.
			sess = &connSession{next: sess, conn: mc}
		}
		return sess, err
	}

	if s.User.Authenticated() {
		// An earlier middleware (Session, say) has authenticated the connection, and it
		// carries no ticket: nothing to check, no first message to wait for.
		return next.Connect(ctx, c)
	}
	if a.transports&TransportFirstMessage == 0 || s.Type == "sse" {
		// An event stream cannot send a first message.
		return nil, canal.Reject(http.StatusForbidden, "missing ticket")
	}
	var opts canal.AcceptOptions
	if marker {
		opts.Subprotocol = a.marker
	}
	if err := c.Accept(opts); err != nil {
		return nil, err
	}
	fm := &firstMessageSession{a: a, next: next, raw: c, conn: &acceptedConn{Conn: c}}
	fm.timer = time.AfterFunc(a.authTimeout, fm.expire)
	return fm, nil
}

// consume asks the store, bounded by the Timeout. Its error is an *authError whose text
// never contains the ticket.
func (a *ticketAuth) consume(ctx context.Context, tkt, raw string) (canal.User, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	u, err := a.store.Consume(ctx, tkt)
	switch {
	case err == nil && u.Authenticated():
		return u, nil
	case err == nil:
		return canal.User{}, &authError{invalid: true, err: ticket.ErrInvalid}
	case errors.Is(err, ticket.ErrInvalid):
		return canal.User{}, &authError{invalid: true, err: redact(err, tkt, raw)}
	case errors.Is(err, canal.ErrUnavailable):
		return canal.User{}, &authError{reason: "ticket store unavailable", err: redact(err, tkt, raw)}
	default:
		return canal.User{}, &authError{reason: "ticket store failed", err: redact(err, tkt, raw)}
	}
}

// authError classifies a failed Consume: invalid (the client's fault) or not (the
// store's, failing closed).
type authError struct {
	invalid bool
	reason  string // for store failures
	err     error  // redacted
}

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// rejection answers a failed Consume before the upgrade: 403 or 503.
func (a *ticketAuth) rejection(err error) error {
	ae := err.(*authError)
	if ae.invalid {
		return &canal.RejectError{Status: http.StatusForbidden, Reason: "invalid ticket", Err: ae.err}
	}
	return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: ae.reason, Err: ae.err}
}

// closing answers a failed Consume after the upgrade: 4401 or 1011.
func closing(err error) error {
	ae := err.(*authError)
	if ae.invalid {
		return &canal.CloseError{Code: canal.CloseUnauthorized, Reason: "invalid ticket", Err: ae.err}
	}
	return &canal.CloseError{Code: canal.CloseInternalError, Reason: "authentication unavailable", Err: ae.err}
}

// stripBearer removes every bearer entry from the scope's subprotocols and from the
// Sec-Websocket-Protocol header, and returns the first non-empty bearer ticket.
func (a *ticketAuth) stripBearer(s *canal.Scope) string {
	first := ""
	kept := s.Subprotocols[:0:0]
	stripped := false
	for _, p := range s.Subprotocols {
		if t, ok := strings.CutPrefix(p, a.bearer); ok {
			stripped = true
			if first == "" {
				first = t
			}
			continue
		}
		kept = append(kept, p)
	}
	if stripped {
		s.Subprotocols = kept
	}
	const key = "Sec-Websocket-Protocol"
	vs, ok := s.Headers[key]
	if !ok {
		return first
	}
	changed := false
	var out []string
	for _, v := range vs {
		parts := strings.Split(v, ",")
		keep := parts[:0]
		for _, p := range parts {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if strings.HasPrefix(p, a.bearer) {
				changed = true
				continue
			}
			keep = append(keep, p)
		}
		if len(keep) > 0 {
			out = append(out, strings.Join(keep, ", "))
		}
	}
	if changed {
		if len(out) == 0 {
			delete(s.Headers, key)
		} else {
			s.Headers[key] = out
		}
	}
	return first
}

// removeQueryParam returns rawQuery without the pairs whose key, decoded, is name.
// The other pairs are kept as sent, in order; a query without such a pair is returned
// unchanged.
func removeQueryParam(rawQuery, name string) string {
	if !strings.Contains(rawQuery, name) && !strings.Contains(rawQuery, "%") {
		return rawQuery
	}
	kept := make([]string, 0, strings.Count(rawQuery, "&")+1)
	removed := false
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		k, _, _ := strings.Cut(pair, "=")
		if k == name {
			removed = true
			continue
		}
		if strings.Contains(k, "%") {
			if dk, err := url.QueryUnescape(k); err == nil && dk == name {
				removed = true
				continue
			}
		}
		kept = append(kept, pair)
	}
	if !removed {
		return rawQuery
	}
	return strings.Join(slices.DeleteFunc(kept, func(p string) bool { return p == "" }), "&")
}

// httpToken reports whether s is an RFC 9110 token, the syntax of a subprotocol name.
func httpToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// markerConn selects the marker subprotocol when the application accepts without one.
type markerConn struct {
	canal.Conn
	marker string
}

// Unwrap returns the server's Conn: markerConn changes Accept only, so the server's
// DeliverFrame (the encode-once fan-out path) may be used below it.
func (c *markerConn) Unwrap() canal.Conn { return c.Conn }

func (c *markerConn) Accept(opts canal.AcceptOptions) error {
	if opts.Subprotocol == "" {
		opts.Subprotocol = c.marker
	}
	return c.Conn.Accept(opts)
}

// connSession hands conn, instead of the server's Conn, to a session whose handshake
// is still pending, so that its late Accept selects the marker.
type connSession struct {
	next canal.Session
	conn canal.Conn
}

func (s *connSession) Receive(ctx context.Context, _ canal.Conn, f canal.Frame) error {
	return s.next.Receive(ctx, s.conn, f)
}

func (s *connSession) Event(ctx context.Context, _ canal.Conn, m canal.Message) error {
	return s.next.Event(ctx, s.conn, m)
}

func (s *connSession) Disconnect(ctx context.Context, _ canal.Conn, code int) {
	s.next.Disconnect(ctx, s.conn, code)
}

// acceptedConn is the Conn the next handler sees in first-message mode: the socket is
// already open, so Accept does nothing.
type acceptedConn struct{ canal.Conn }

func (*acceptedConn) Accept(canal.AcceptOptions) error { return nil }

// Unwrap returns the server's Conn: acceptedConn changes Accept only, so the server's
// DeliverFrame (the encode-once fan-out path) may be used below it.
func (c *acceptedConn) Unwrap() canal.Conn { return c.Conn }

// firstMessageSession waits for the ticket frame, then runs the next handler and
// forwards to its session. The server calls it one method at a time; only the timer's
// goroutine runs beside it, and that touches nothing but raw.Close.
type firstMessageSession struct {
	a     *ticketAuth
	next  canal.Handler
	raw   canal.Conn    // the server's Conn
	conn  *acceptedConn // what the next handler and its session see
	timer *time.Timer

	done  bool          // the first frame was handled (or the connection ended)
	inner canal.Session // the next handler's session once authenticated
}

func (s *firstMessageSession) expire() {
	_ = s.raw.Close(canal.CloseAuthTimeout, "authentication timeout")
}

func (s *firstMessageSession) Receive(ctx context.Context, _ canal.Conn, f canal.Frame) error {
	if s.inner != nil {
		return s.inner.Receive(ctx, s.conn, f)
	}
	if s.done {
		return nil // closing: the failed first frame already decided
	}
	s.done = true
	if !s.timer.Stop() {
		// The timer fired (or is firing): the socket is closing with 4408. Do not
		// burn a ticket for a connection that is going away.
		return &canal.CloseError{Code: canal.CloseAuthTimeout, Reason: "authentication timeout"}
	}
	tkt, ok := parseAuthFrame(f)
	if !ok {
		return &canal.CloseError{Code: canal.CloseUnauthorized, Reason: "ticket expected"}
	}
	u, err := s.a.consume(ctx, tkt, "")
	if err != nil {
		return closing(err)
	}
	s.raw.Scope().User = u
	sess, err := s.next.Connect(ctx, s.conn)
	if err == nil && sess == nil {
		err = errors.New("middleware: Ticket: next handler returned neither a session nor an error")
	}
	if err != nil {
		return &canal.CloseError{Code: connectCloseCode(err), Err: err}
	}
	s.inner = sess
	return nil
}

func (s *firstMessageSession) Event(ctx context.Context, _ canal.Conn, m canal.Message) error {
	if s.inner == nil {
		return nil // not authenticated: nobody to deliver to
	}
	return s.inner.Event(ctx, s.conn, m)
}

func (s *firstMessageSession) Disconnect(ctx context.Context, _ canal.Conn, code int) {
	s.timer.Stop()
	s.done = true
	if s.inner != nil {
		s.inner.Disconnect(ctx, s.conn, code)
	}
}

// parseAuthFrame extracts the ticket from {"ticket": "T"}; other fields are ignored.
func parseAuthFrame(f canal.Frame) (string, bool) {
	if f.Binary || len(f.Data) > maxAuthFrame {
		return "", false
	}
	var msg struct {
		Ticket string `json:"ticket"`
	}
	if err := json.Unmarshal(f.Data, &msg); err != nil || msg.Ticket == "" {
		return "", false
	}
	return msg.Ticket, true
}

// connectCloseCode maps an error of the next handler's Connect, run after the socket
// was opened, to a close code: a refusal's HTTP status becomes 4000+status for 4xx and
// 1013 for 503, a *canal.CloseError keeps its code, and anything else is 1011.
func connectCloseCode(err error) int {
	var ce *canal.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var rej *canal.RejectError
	if errors.As(err, &rej) {
		switch {
		case rej.Status == http.StatusServiceUnavailable:
			return canal.CloseTryAgainLater
		case rej.Status >= 400 && rej.Status <= 499:
			return 4000 + rej.Status
		}
	}
	return canal.CloseInternalError
}
