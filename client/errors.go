package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/longpoll/longpoll/protocol"
)

// ErrClosed is returned by the calls of a closed Client, and ends the
// subscriptions that Close stopped.
var ErrClosed = errors.New("client: closed")

// Error is an error answer of the server: its HTTP status and the protocol's
// error object (docs/protocol.md, "Errors").
type Error struct {
	Status    int
	Code      string // "" when the body was not a protocol error
	Message   string
	RequestID string
	// RetryAfter is how long the server asked the client to wait before
	// trying again (retry_after_ms, else the Retry-After header); 0 if none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := fmt.Sprintf("server answered %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (request_id " + e.RequestID + ")"
	}
	return s
}

// Is reports whether target is a *protocol.Error or an *Error with the same
// code, so that errors.Is(err, protocol.ErrStoreFull) works on an answer.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case *protocol.Error:
		return e.Code != "" && t.Code == e.Code
	case *Error:
		return e.Code != "" && t.Code == e.Code
	}
	return false
}

// temporary reports whether trying again may bring a different answer.
func (e *Error) temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout
}

// staleToken reports whether the server refused the request's token as one
// that a new token from the hook may replace: expired, or revoked (which
// no server sends yet; it is handled the same way so that clients in the
// field are ready for it).
func (e *Error) staleToken() bool {
	return e.Status == http.StatusUnauthorized && (e.Code == protocol.CodeTokenExpired || e.Code == protocol.CodeTokenRevoked)
}

// tokenError is a failure of the WithToken hook. It is never retried: the
// hook does its own retrying.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return "token hook: " + e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// protocolError is a 200 answer that is not protocol v1: the URL points at
// something else. Retrying does not mend it.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "reply is not longpoll protocol v1: " + e.msg }

// retryable reports whether an attempt that failed with err is worth
// repeating after a wait: network failures, truncated replies, 5xx, 429,
// 408, and a token_expired or token_revoked that a refreshed token did not
// mend.
func (c *Client) retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.temporary() || (e.staleToken() && c.auth != nil)
	}
	var te *tokenError
	var pe *protocolError
	return !errors.As(err, &te) && !errors.As(err, &pe)
}

// retryAfter returns the wait the server asked for in err, or 0.
func retryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// eventError is the *Error of a stream's error event: the error object of
// a JSON error reply, with the status its code has there. requestID is
// the stream's X-Request-Id, for an object without one.
func eventError(obj *protocol.ErrorObject, requestID string) *Error {
	status, ok := protocol.Status(obj.Code)
	if !ok {
		status = http.StatusInternalServerError
	}
	e := &Error{Status: status, Code: obj.Code, Message: obj.Message, RequestID: obj.RequestID}
	if ms := obj.RetryAfterMS; ms > 0 {
		e.RetryAfter = min(time.Duration(ms)*time.Millisecond, maxServerWait)
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	if e.RequestID == "" {
		e.RequestID = requestID
	}
	return e
}
