package canal

import (
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNotAccepted: the operation needs an accepted connection.
	ErrNotAccepted = errors.New("canal: connection not accepted")
	// ErrClosed: the connection is closed or closing.
	ErrClosed = errors.New("canal: connection closed")
	// ErrSubprotocolNotOffered: Accept named a subprotocol the client did not offer.
	ErrSubprotocolNotOffered = errors.New("canal: subprotocol not offered by the client")
	// ErrInvalidCloseCode: Close was given a code an application may not send.
	ErrInvalidCloseCode = errors.New("canal: invalid close code")
	// ErrChannelFull: a layer channel is at capacity. Send returns it; GroupSend never does.
	ErrChannelFull = errors.New("canal: channel full")
	// ErrInvalidName: a channel or group name breaks Channels' naming rules.
	ErrInvalidName = errors.New("canal: invalid channel or group name")
	// ErrLayerClosed: the layer was closed.
	ErrLayerClosed = errors.New("canal: layer closed")
	// ErrUnavailable: a backing service (Redis) cannot be reached. Auth fails closed on it.
	ErrUnavailable = errors.New("canal: service unavailable")
)

// RejectError refuses a handshake with an HTTP status before the upgrade.
// A Handler returns it from Connect.
//
// The client sees Status, and Reason twice: in the X-Canal-Reason response header and
// as the text/plain body. Reason is therefore public. Keep it a short fixed phrase that
// says what was wrong ("invalid ticket", "missing token", "no route for path"), and
// never put in it a credential, a query string, a cookie, or the text of an internal
// error: the server sends at most 123 bytes of it, with any byte outside printable
// ASCII replaced by '?'. Err, the cause, stays private: the server logs it (rate
// limited) and sends nothing of it. A refusal that is not a *RejectError answers 500
// with the reason "internal error".
//
// What a browser developer sees: the WebSocket API hides a refused upgrade's status,
// header and body from the page, which gets an error event, then a close event with
// code 1006 and no reason. The status and X-Canal-Reason are in the developer tools'
// network panel, on the failed request. A page that must read the reason in its code
// needs a refusal after the upgrade: a first-message credential's failure is a close
// frame (4401, 4403, 4408, ...) whose reason the close event carries.
type RejectError struct {
	Status int
	Reason string // sent to the client (X-Canal-Reason, body): short, never a secret
	Err    error  // optional cause: logged, never sent
}

// Reject returns a *RejectError for status (403 when status is 0).
func Reject(status int, reason string) error {
	if status == 0 {
		status = http.StatusForbidden
	}
	return &RejectError{Status: status, Reason: reason}
}

func (e *RejectError) Error() string {
	msg := fmt.Sprintf("canal: handshake rejected with HTTP %d", e.Status)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *RejectError) Unwrap() error { return e.Err }

// ReasonHeader is the response header that carries a refused handshake's reason
// (see [RejectError]).
const ReasonHeader = "X-Canal-Reason"

// CloseFor returns the close code and reason for err ending a connection that was
// already open: a Connect that failed after accepting (the server then opens the
// socket and closes it at once), or a refusal after a first-message credential.
//
//	*CloseError                 its Code and Reason
//	*RejectError 4xx            4000+Status (4401, 4403, 4404, ...) and its Reason
//	*RejectError 503            1013 (try again later) and its Reason
//	*RejectError other status   1011 and its Reason
//	any other error             1011 and no reason (its text may hold anything)
//
// The reason is cut to the 123 bytes a close frame holds. The server, middleware
// and consumer.Disconnect all use it, so the code a client sees and the code the
// consumer's Disconnect gets agree.
func CloseFor(err error) (code int, reason string) {
	var ce *CloseError
	var rej *RejectError
	switch {
	case errors.As(err, &ce):
		code, reason = ce.Code, ce.Reason
	case errors.As(err, &rej):
		reason = rej.Reason
		switch {
		case rej.Status == http.StatusServiceUnavailable:
			code = CloseTryAgainLater
		case rej.Status >= 400 && rej.Status <= 499:
			code = 4000 + rej.Status
		default:
			code = CloseInternalError
		}
	default:
		return CloseInternalError, ""
	}
	return code, truncateReason(reason)
}

// maxCloseReason is what a close frame's reason may hold: 125 bytes of payload less
// the code.
const maxCloseReason = 123

// truncateReason cuts s to maxCloseReason bytes without splitting a UTF-8 sequence.
func truncateReason(s string) string {
	if len(s) <= maxCloseReason {
		return s
	}
	n := maxCloseReason
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// CloseError closes an accepted connection with Code. Session methods return it to end
// a connection with a chosen code; any other error closes with 1011.
type CloseError struct {
	Code   int
	Reason string // sent in the close frame; keep it short (≤ 123 bytes) and free of secrets
	Err    error
}

func (e *CloseError) Error() string {
	msg := fmt.Sprintf("canal: close %d", e.Code)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *CloseError) Unwrap() error { return e.Err }

// WebSocket close codes used by Canal.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001 // server shutdown
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003 // binary frame to a JSON consumer
	CloseNoStatus        = 1005 // the client closed without a code
	CloseAbnormal        = 1006 // no close frame: TCP dropped, or refused before accept
	CloseInvalidPayload  = 1007 // invalid UTF-8 or invalid JSON
	ClosePolicyViolation = 1008
	CloseMessageTooBig   = 1009 // frame over the read limit
	CloseInternalError   = 1011 // a handler failed or panicked
	CloseTryAgainLater   = 1013 // slow consumer, or a backing service is down
	// CloseUnauthorized closes a socket whose credentials (a first-message ticket) failed.
	CloseUnauthorized = 4401
	// CloseForbidden closes a socket whose user may not use it (e.g. logged out by Django).
	CloseForbidden = 4403
	// CloseAuthTimeout closes a socket that did not authenticate in time.
	CloseAuthTimeout = 4408
)

// ValidAppCloseCode reports whether an application may close with code:
// 1000, 1001, 1003, 1007, 1008, 1011, 1013 and 3000–4999.
func ValidAppCloseCode(code int) bool {
	switch code {
	case CloseNormal, CloseGoingAway, CloseUnsupportedData, CloseInvalidPayload,
		ClosePolicyViolation, CloseInternalError, CloseTryAgainLater:
		return true
	}
	return code >= 3000 && code <= 4999
}

// ErrInvalidMessage: a layer message has no usable "type".
var ErrInvalidMessage = errors.New("canal: invalid message")
