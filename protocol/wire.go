package protocol

import (
	"encoding/json"
	"time"
)

// The JSON shapes of requests and replies, as docs/protocol.md gives
// them. The server writes its poll replies by hand for speed; a test
// holds what it writes to these shapes.

// PublishItem is one message of a publish request: the body of
// POST /v1/publish, or one element of PublishBatch.Messages.
type PublishItem struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	ID    string          `json:"id,omitempty"`
}

// PublishBatch is the body of a publish of several messages.
type PublishBatch struct {
	Messages []PublishItem `json:"messages"`
}

// PublishReply is the 200 reply of a publish: one receipt per message, in
// the request's order.
type PublishReply struct {
	Messages []PublishReceipt `json:"messages"`
}

// PublishReceipt says where one published message is: its topic's seq,
// and whether its id was seen before (nothing was appended then, and Seq
// is the original's).
type PublishReceipt struct {
	Topic     string `json:"topic"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// PollReply is the 200 reply of a poll.
type PollReply struct {
	Messages []ReplyMessage `json:"messages"`
	// Cursor is where the next poll resumes: opaque, sent back unchanged.
	Cursor string `json:"cursor"`
	// Timeout reports a hold that ended with nothing to deliver.
	Timeout bool       `json:"timeout"`
	Gaps    []ReplyGap `json:"gaps"`
	// RetryAfterMS, when set, asks the client to wait that long before it
	// polls again (the server is shutting down or draining).
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// ReplyMessage is a message as a poll reply carries it.
type ReplyMessage struct {
	Topic string          `json:"topic"`
	Seq   uint64          `json:"seq"`
	Time  time.Time       `json:"time"`
	ID    string          `json:"id,omitempty"`
	Data  json.RawMessage `json:"data"`
}

// ReplyGap is a gap as a poll reply carries it.
type ReplyGap struct {
	Topic  string    `json:"topic"`
	Reason GapReason `json:"reason"`
	Missed uint64    `json:"missed,omitempty"`
}

// ErrorReply is the body of every error reply.
type ErrorReply struct {
	Error ErrorObject `json:"error"`
}

// ErrorObject is the protocol's error: its code, a message for people,
// the request's id, and for a refusal worth retrying the delay to wait.
type ErrorObject struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	RequestID    string `json:"request_id"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// PollRequest is the body of POST /v1/poll, the form of a poll whose
// query string would be too long: the same parameters as the query's.
type PollRequest struct {
	Topics  []string `json:"topics"`
	Cursor  string   `json:"cursor,omitempty"`
	Since   string   `json:"since,omitempty"`
	Timeout string   `json:"timeout,omitempty"`
	Limit   int      `json:"limit,omitempty"`
}
