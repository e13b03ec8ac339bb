package protocol

import (
	"encoding/json"
	"time"
)

// Position is a reader's place in one topic's log: the epoch of the log it read
// and the seq of the last message it consumed there.
//
// The zero Position means "before the topic had any message": reading from it
// continues into the topic's first messages without a gap, whatever the epoch
// of the log that holds them.
type Position struct {
	// Epoch identifies one life of a topic's log. A log that is lost and
	// started again (a memory broker restarted, Redis data flushed, a topic
	// forgotten after its age limit) gets a new epoch. 0 is never the epoch of
	// a live log.
	Epoch uint64
	// Seq is the seq of the last message consumed; 0 is before the first.
	Seq uint64
}

// Message is one message of a topic's log.
type Message struct {
	Topic string
	// Seq is the message's place in its topic's log: 1, 2, 3, ... with no gaps.
	Seq uint64
	// Time is when the broker appended it (UTC); never decreasing within a topic.
	Time time.Time
	// ID is the publisher's idempotency key, "" when none was given.
	ID string
	// Data is the message's JSON value, exactly as published (compacted).
	Data json.RawMessage
}

// GapReason says why a reader missed messages.
type GapReason string

const (
	// GapExpired: retention dropped messages the reader had not read yet.
	GapExpired GapReason = "expired"
	// GapReset: the topic's log the reader's position refers to is gone (a new
	// epoch), or the position is past the log's head.
	GapReset GapReason = "reset"
	// GapCorrupt: stored messages the reader had not read yet cannot be
	// read back (the store's data is damaged); they are skipped.
	GapCorrupt GapReason = "corrupt"
)

// Gap reports messages a reader can no longer get.
type Gap struct {
	Topic  string
	Reason GapReason
	// Missed is the exact number of messages dropped, for GapExpired, or
	// skipped because they cannot be read, for GapCorrupt.
	Missed uint64
}
