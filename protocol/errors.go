package protocol

import (
	"net/http"
	"time"
)

// Error codes: the "code" of the protocol's JSON errors.
const (
	CodeInvalidTopic     = "invalid_topic"
	CodeReservedTopic    = "reserved_topic"
	CodeInvalidCursor    = "invalid_cursor"
	CodeInvalidParameter = "invalid_parameter"
	CodeInvalidBody      = "invalid_body"
	CodeTooManyTopics    = "too_many_topics"
	CodeTooLarge         = "too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeOverloaded       = "overloaded"
	CodeStoreFull        = "store_full"
	CodeUnavailable      = "broker_unavailable"
	CodeShuttingDown     = "shutting_down"
	CodeInternal         = "internal"
	CodeUnauthorized     = "unauthorized"
	CodeTokenExpired     = "token_expired"
	CodeForbidden        = "forbidden"
	CodeRateLimited      = "rate_limited"

	// CodeTokenRevoked: the token was withdrawn before its expiry (POST
	// /v1/admin/disconnect). Clients treat it as token_expired: get a new
	// token and try once more.
	CodeTokenRevoked = "token_revoked"
	// CodeDraining: the node is draining (POST /v1/admin/drain, or
	// serve --drain-delay at SIGTERM) and takes no new polls; retry after
	// Retry-After, which a load balancer routes to another node.
	CodeDraining = "draining"
	// CodeNotImplemented: the store lacks what an admin request needs.
	CodeNotImplemented = "not_implemented"
)

// Error is an error with a protocol code. The server maps codes to HTTP
// statuses in one table; errors.Is matches two Errors by code.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when positive, is the base delay a client should wait
	// before trying again (the server spreads it with jitter).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return "longpoll: " + e.Message }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinel errors that brokers return and callers branch on with errors.Is.
var (
	// ErrStoreFull: the broker has no room for more topics or bytes.
	ErrStoreFull = &Error{Code: CodeStoreFull, Message: "store is full", RetryAfter: 5 * time.Second}
	// ErrUnavailable: the broker's store cannot be reached now.
	ErrUnavailable = &Error{Code: CodeUnavailable, Message: "broker unavailable", RetryAfter: 2 * time.Second}
)

// Status returns the HTTP status of an error code, as the server's JSON
// error replies carry it (docs/protocol.md, "Errors"), and false for a
// code it does not know. A stream's error event has no status of its
// own: a client handles it as the reply with its code.
func Status(code string) (int, bool) {
	s, ok := statusOf[code]
	return s, ok
}

// statusOf maps each error code to its HTTP status: the one table.
var statusOf = map[string]int{
	CodeInvalidTopic:     http.StatusBadRequest,
	CodeInvalidCursor:    http.StatusBadRequest,
	CodeInvalidParameter: http.StatusBadRequest,
	CodeInvalidBody:      http.StatusBadRequest,
	CodeTooManyTopics:    http.StatusBadRequest,
	CodeReservedTopic:    http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeOverloaded:       http.StatusServiceUnavailable,
	CodeStoreFull:        http.StatusServiceUnavailable,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeShuttingDown:     http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeTokenExpired:     http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeTokenRevoked:     http.StatusUnauthorized,
	CodeDraining:         http.StatusServiceUnavailable,
	CodeNotImplemented:   http.StatusNotImplemented,
}
