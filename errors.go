package canal

import (
	"errors"
	"fmt"
	"net/http"
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
// A Handler returns it from Connect; the client sees Status and an empty body.
type RejectError struct {
	Status int
	Reason string // logged, never sent to the client
	Err    error  // optional cause
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
