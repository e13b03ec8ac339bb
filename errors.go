package longpoll

import (
	"errors"

	"github.com/longpoll/longpoll/protocol"
)

// Error codes: the "code" of the protocol's JSON errors (package protocol
// holds them).
const (
	CodeInvalidTopic     = protocol.CodeInvalidTopic
	CodeReservedTopic    = protocol.CodeReservedTopic
	CodeInvalidCursor    = protocol.CodeInvalidCursor
	CodeInvalidParameter = protocol.CodeInvalidParameter
	CodeInvalidBody      = protocol.CodeInvalidBody
	CodeTooManyTopics    = protocol.CodeTooManyTopics
	CodeTooLarge         = protocol.CodeTooLarge
	CodeUnsupportedMedia = protocol.CodeUnsupportedMedia
	CodeNotFound         = protocol.CodeNotFound
	CodeMethodNotAllowed = protocol.CodeMethodNotAllowed
	CodeOverloaded       = protocol.CodeOverloaded
	CodeStoreFull        = protocol.CodeStoreFull
	CodeUnavailable      = protocol.CodeUnavailable
	CodeShuttingDown     = protocol.CodeShuttingDown
	CodeInternal         = protocol.CodeInternal
	CodeUnauthorized     = protocol.CodeUnauthorized
	CodeTokenExpired     = protocol.CodeTokenExpired
	CodeTokenRevoked     = protocol.CodeTokenRevoked
	CodeForbidden        = protocol.CodeForbidden
	CodeRateLimited      = protocol.CodeRateLimited
	CodeDraining         = protocol.CodeDraining
	CodeNotImplemented   = protocol.CodeNotImplemented
)

// Error is an error with a protocol code; see protocol.Error. The HTTP
// layer maps codes to statuses in one table.
type Error = protocol.Error

// Sentinel errors that brokers return and callers branch on with errors.Is.
var (
	// ErrStoreFull: the broker has no room for more topics or bytes.
	ErrStoreFull = protocol.ErrStoreFull
	// ErrUnavailable: the broker's store cannot be reached now.
	ErrUnavailable = protocol.ErrUnavailable
	// ErrClosed: the broker or server was closed.
	ErrClosed = errors.New("longpoll: closed")
	// ErrPartialAppend: a batch spanning shards (or, in broker/jetstream,
	// topics) was appended in part, the one exception to Append's all or
	// nothing (see Broker.Append).
	ErrPartialAppend = errors.New("longpoll: batch appended in part")
)
