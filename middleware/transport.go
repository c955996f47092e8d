package middleware

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
)

// Transport is a set of the ways a client may present its credential to [Token] or
// [Ticket].
type Transport uint8

// The transports. Combine them with |; the zero value means all three.
const (
	// TransportQuery reads the credential from the query string: ws://host/ws/?token=T.
	// Query strings end up in access logs and browser history: prefer it for
	// single-use tickets, not for long-lived tokens.
	TransportQuery Transport = 1 << iota
	// TransportSubprotocol reads the credential from a bearer subprotocol entry, for
	// browsers, which cannot set an Authorization header on a WebSocket:
	// new WebSocket(url, ["canal.token", "canal.token." + T]). See [BearerProtocol]
	// for credentials that are not valid subprotocol names.
	TransportSubprotocol
	// TransportFirstMessage accepts the socket first and reads the credential from the
	// client's first frame: a JSON object {"token": T} ({"ticket": T} for Ticket), or
	// the bare credential as the whole text frame.
	TransportFirstMessage

	allTransports = TransportQuery | TransportSubprotocol | TransportFirstMessage
)

// Shared defaults of [TokenOptions] and [TicketOptions].
const (
	defaultAuthTimeout   = 5 * time.Second
	defaultVerifyTimeout = 2 * time.Second
	// maxAuthFrame bounds the first-message frame: credentials are short (a ticket is
	// at most ticket.MaxLen bytes, a JWT a few hundred), so anything larger is not an
	// authentication frame and is refused without being parsed.
	maxAuthFrame = 4096
	// encodedBearer follows the marker in a base64url-encoded bearer entry.
	encodedBearer = "-b64."
)

// BearerProtocol returns the subprotocol entry that carries credential under marker
// (e.g. "canal.token"): marker + "." + credential when the credential is a valid
// subprotocol name (an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~; DRF tokens,
// JWTs, session keys and tickets are), and otherwise marker + "-b64." + the credential
// in unpadded base64url (RFC 4648 §5), for credentials with ':', '/', '=' or other
// separators (django.core.signing tokens). The middleware accepts both forms. In a
// browser:
//
//	const b64 = btoa(token).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
//	new WebSocket(url, ["canal.token", "canal.token-b64." + b64]);
//
// (btoa takes Latin-1 text; encode other text to UTF-8 bytes first.)
func BearerProtocol(marker, credential string) string {
	if httpToken(credential) {
		return marker + "." + credential
	}
	return marker + encodedBearer + base64.RawURLEncoding.EncodeToString([]byte(credential))
}

// credentialAuth is the transport mechanics [Token] and [Ticket] share: where a
// credential is read from, how it is scrubbed from the scope, how the verifier's
// answers become statuses and close codes. It is immutable after construction, hence
// safe for concurrent use.
type credentialAuth struct {
	name        string // the constructor, for errors and panics: "Token", "Ticket"
	what        string // the credential, in reasons: "token", "ticket"
	backend     string // what verifies it, in reasons: "token verifier", "ticket store"
	verify      auth.Verifier
	invalid     error // the verifier's sentinel for a worthless credential, besides auth.ErrInvalid
	transports  Transport
	anonymous   bool // no credential upfront: continue as anonymous
	param       string
	marker      string
	bearer      string // marker + "."
	encoded     string // marker + "-b64."
	authTimeout time.Duration
	timeout     time.Duration
}

// credentialOptions are the options Token and Ticket have in common.
type credentialOptions struct {
	Transports  Transport
	Param       string
	Subprotocol string
	AuthTimeout time.Duration
	Timeout     time.Duration
}

func newCredentialAuth(a *credentialAuth, opts credentialOptions) (*credentialAuth, error) {
	fail := func(format string, args ...any) (*credentialAuth, error) {
		return nil, fmt.Errorf("middleware: "+a.name+": "+format, args...)
	}
	if opts.Transports&^allTransports != 0 {
		return fail("unknown transport bits %#x", uint8(opts.Transports&^allTransports))
	}
	if opts.AuthTimeout < 0 {
		return fail("negative AuthTimeout %v", opts.AuthTimeout)
	}
	if opts.Timeout < 0 {
		return fail("negative Timeout %v", opts.Timeout)
	}
	a.transports = opts.Transports
	if a.transports == 0 {
		a.transports = allTransports
	}
	a.param = cmp.Or(opts.Param, a.what)
	if strings.ContainsAny(a.param, "&=;#?% +") {
		return fail("invalid query parameter %q", a.param)
	}
	a.marker = cmp.Or(opts.Subprotocol, "canal."+a.what)
	if !httpToken(a.marker) {
		return fail("invalid marker subprotocol %q (want an HTTP token such as %q)", a.marker, "canal."+a.what)
	}
	a.bearer, a.encoded = a.marker+".", a.marker+encodedBearer
	a.authTimeout = cmp.Or(opts.AuthTimeout, defaultAuthTimeout)
	a.timeout = cmp.Or(opts.Timeout, defaultVerifyTimeout)
	return a, nil
}

func (a *credentialAuth) middleware() canal.Middleware {
	return func(next canal.Handler) canal.Handler {
		if next == nil {
			panic("middleware: " + a.name + ": nil next handler")
		}
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			return a.connect(ctx, c, next)
		})
	}
}

// connect runs on the handshake goroutine, where the scope may still be written.
func (a *credentialAuth) connect(ctx context.Context, c canal.Conn, next canal.Handler) (canal.Session, error) {
	s := c.Scope()
	var cred, raw string
	found := false
	if a.transports&TransportQuery != 0 {
		v, r, f, ok := queryParam(s.RawQuery, a.param)
		s.RawQuery = removeQueryParam(s.RawQuery, a.param)
		if !ok {
			a.stripBearer(s)
			return nil, &canal.RejectError{Status: http.StatusForbidden, Reason: "malformed " + a.what, Err: a.invalidErr()}
		}
		cred, raw, found = v, r, f
	}
	b, braw, bok := a.stripBearer(s)
	if !found && a.transports&TransportSubprotocol != 0 {
		if !bok {
			return nil, &canal.RejectError{Status: http.StatusForbidden, Reason: "malformed " + a.what, Err: a.invalidErr()}
		}
		if b != "" {
			cred, raw, found = b, braw, true
		}
	}
	marker := slices.Contains(s.Subprotocols, a.marker)

	if found {
		u, err := a.check(ctx, cred, raw)
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

	if s.User.Authenticated() || a.anonymous {
		// An earlier middleware (Session, say) has authenticated the connection, or
		// anonymous connections are welcome, and it carries no credential: nothing to
		// check, no first message to wait for.
		return next.Connect(ctx, c)
	}
	if a.transports&TransportFirstMessage == 0 || s.Type == "sse" {
		// An event stream cannot send a first message.
		return nil, canal.Reject(http.StatusForbidden, "missing "+a.what)
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

func (a *credentialAuth) invalidErr() error {
	if a.invalid != nil {
		return a.invalid
	}
	return auth.ErrInvalid
}

// check asks the verifier, bounded by the Timeout. Its error is an *authError whose
// text never contains the credential.
func (a *credentialAuth) check(ctx context.Context, cred, raw string) (canal.User, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	u, err := a.verify(ctx, cred)
	switch {
	case err == nil && u.Authenticated():
		return u, nil
	case err == nil:
		// A verifier that answers "nobody" without an error (the article's
		// AnonymousUser fallback) still means the credential is worthless.
		return canal.User{}, &authError{invalid: true, err: a.invalidErr()}
	case errors.Is(err, auth.ErrInvalid) || a.invalid != nil && errors.Is(err, a.invalid):
		return canal.User{}, &authError{invalid: true, err: redact(err, cred, raw)}
	case errors.Is(err, canal.ErrUnavailable):
		return canal.User{}, &authError{reason: a.backend + " unavailable", err: redact(err, cred, raw)}
	default:
		return canal.User{}, &authError{reason: a.backend + " failed", err: redact(err, cred, raw)}
	}
}

// authError classifies a failed check: invalid (the client's fault) or not (the
// verifier's, failing closed).
type authError struct {
	invalid bool
	reason  string // for verifier failures
	err     error  // redacted
}

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// rejection answers a failed check before the upgrade: 403 or 503.
func (a *credentialAuth) rejection(err error) error {
	ae := err.(*authError)
	if ae.invalid {
		return &canal.RejectError{Status: http.StatusForbidden, Reason: "invalid " + a.what, Err: ae.err}
	}
	return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: ae.reason, Err: ae.err}
}

// closing answers a failed check after the upgrade: 4401 or 1011.
func (a *credentialAuth) closing(err error) error {
	ae := err.(*authError)
	if ae.invalid {
		return &canal.CloseError{Code: canal.CloseUnauthorized, Reason: "invalid " + a.what, Err: ae.err}
	}
	return &canal.CloseError{Code: canal.CloseInternalError, Reason: "authentication unavailable", Err: ae.err}
}

// stripBearer removes every bearer entry (plain or base64url) from the scope's
// subprotocols and from the Sec-Websocket-Protocol header, and returns the first
// non-empty bearer credential, decoded, with the entry's text as sent. ok is false
// when that entry is base64url that cannot be decoded.
func (a *credentialAuth) stripBearer(s *canal.Scope) (cred, raw string, ok bool) {
	ok = true
	kept := s.Subprotocols[:0:0]
	stripped := false
	for _, p := range s.Subprotocols {
		t, plain := strings.CutPrefix(p, a.bearer)
		e, enc := strings.CutPrefix(p, a.encoded)
		if !plain && !enc {
			kept = append(kept, p)
			continue
		}
		stripped = true
		switch {
		case raw != "" || !ok:
		case plain && t != "":
			cred, raw = t, t
		case enc && e != "":
			d, err := base64.RawURLEncoding.DecodeString(e)
			raw = e
			if cred = string(d); err != nil || cred == "" {
				cred, ok = "", false
			}
		}
	}
	if stripped {
		s.Subprotocols = kept
	}
	const key = "Sec-Websocket-Protocol"
	vs, found := s.Headers[key]
	if !found {
		return cred, raw, ok
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
			if strings.HasPrefix(p, a.bearer) || strings.HasPrefix(p, a.encoded) {
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
	return cred, raw, ok
}

// parseAuthFrame extracts the credential from a first frame: a JSON object whose field
// is a.what ({"token": "T"}; other fields are ignored), or the whole text frame, spaces
// around it trimmed, when it does not start with '{' and is printable ASCII without
// spaces (every credential of the family is).
func (a *credentialAuth) parseAuthFrame(f canal.Frame) (string, bool) {
	if f.Binary || len(f.Data) > maxAuthFrame {
		return "", false
	}
	data := bytes.TrimSpace(f.Data)
	if len(data) == 0 {
		return "", false
	}
	if data[0] != '{' {
		for _, c := range data {
			if c <= ' ' || c > '~' {
				return "", false
			}
		}
		switch data[0] {
		case '[', '"':
			return "", false // JSON, but not an object
		}
		return string(data), true
	}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(data, &msg); err != nil {
		return "", false
	}
	var cred string
	if err := json.Unmarshal(msg[a.what], &cred); err != nil || cred == "" {
		return "", false
	}
	return cred, true
}

// firstMessageSession waits for the credential frame, then runs the next handler and
// forwards to its session. The server calls it one method at a time; only the timer's
// goroutine runs beside it, and that touches nothing but raw.Close.
type firstMessageSession struct {
	a     *credentialAuth
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
		// burn a credential for a connection that is going away.
		return &canal.CloseError{Code: canal.CloseAuthTimeout, Reason: "authentication timeout"}
	}
	cred, ok := s.a.parseAuthFrame(f)
	if !ok {
		return &canal.CloseError{Code: canal.CloseUnauthorized, Reason: s.a.what + " expected"}
	}
	u, err := s.a.check(ctx, cred, "")
	if err != nil {
		return s.a.closing(err)
	}
	s.raw.Scope().User = u
	sess, err := s.next.Connect(ctx, s.conn)
	if err == nil && sess == nil {
		err = errors.New("middleware: " + s.a.name + ": next handler returned neither a session nor an error")
	}
	if err != nil {
		// The socket is open, so the refusal is a close frame. canal.CloseFor is also
		// what consumer.Handler gave its Disconnect, so the two agree.
		code, reason := canal.CloseFor(err)
		return &canal.CloseError{Code: code, Reason: reason, Err: err}
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

// queryParam finds the first non-empty value of name in a raw query string without
// parsing the rest, so the usual case allocates nothing. It returns the decoded value
// and the value as sent; ok is false when that value cannot be decoded. Pairs whose
// key cannot be decoded are skipped, as url.ParseQuery does.
func queryParam(rawQuery, name string) (value, raw string, found, ok bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if v == "" || strings.Contains(k, ";") {
			continue
		}
		if k != name {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			dk, err := url.QueryUnescape(k)
			if err != nil || dk != name {
				continue
			}
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return "", "", true, false
		}
		if dv == "" {
			continue
		}
		return dv, v, true, true
	}
	return "", "", false, true
}

// redactedError hides a token that a lookup put in its error text, while errors.Is and
// errors.As still see the original chain.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, secrets ...string) error {
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return &redactedError{msg: msg, err: err}
}
