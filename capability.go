package longpoll

import (
	"context"
	"encoding/json"
	"time"
)

// The admin API (docs/protocol.md, "Admin API") needs more of a store than
// Broker promises. Each need is an optional capability beside Broker,
// checked by the conformance suite in broker/brokertest and implemented by
// every broker of this module; the server answers 501 not_implemented for
// a store that lacks one.

// TopicInfo describes one topic for the admin API's listing.
type TopicInfo struct {
	Topic string
	// Epoch, Head and Oldest are as in TopicStat.
	Epoch, Head, Oldest uint64
	// Retained is the number of messages a reader can still get.
	Retained uint64
	// Bytes is the size of the retained messages' data, in bytes of JSON.
	Bytes uint64
	// LastPublish is the time of the newest message appended in this
	// epoch (its Message.Time), or zero when none is retained.
	LastPublish time.Time
}

// TopicLister lists a store's topics.
type TopicLister interface {
	// Topics returns up to limit topics, in byte order of their names,
	// whose names start with prefix and sort after after ("" for the
	// first page). A topic is listed while it has a log: from its first
	// append until its log is deleted or every message of it has expired
	// (a broker may still list a topic whose messages all expired, with
	// Retained 0, until it prunes it). A topic that exists for a whole
	// paged listing appears in it exactly once. limit is at least 1.
	Topics(ctx context.Context, prefix, after string, limit int) ([]TopicInfo, error)
}

// TopicDeleter deletes a topic's log.
type TopicDeleter interface {
	// DeleteTopic drops the topic's log, its messages and its idempotency
	// ids, and reports whether it had one. Afterwards a Read from any
	// position of the old epoch is a GapReset, the next Append starts a
	// new epoch (different from every earlier epoch of the topic) at seq
	// 1, and Stat is the zero TopicStat until then. Every watcher of the
	// topic, on every node, is woken. Deleting a topic with no log is
	// harmless and reports false.
	DeleteTopic(ctx context.Context, topic string) (bool, error)
}

// Revocation refuses the tokens of one subject issued at or before a time.
type Revocation struct {
	Subject string
	// Before: a token of Subject issued (iat, else nbf) at or before
	// Before, in whole seconds, is refused.
	Before time.Time
	// Expires is when the store forgets the revocation.
	Expires time.Time
}

// Revoker keeps revocations in the store, shared by every node.
type Revoker interface {
	// Revoke stores r. A subject has at most one revocation: stored over
	// an earlier one it keeps the later Before and the later Expires of
	// the two (a later Before refuses more).
	Revoke(ctx context.Context, r Revocation) error
	// Revocations returns every revocation in force (Expires after now).
	Revocations(ctx context.Context) ([]Revocation, error)
	// WatchRevocations calls fn with each revocation stored from now on,
	// by this node or any other sharing the store, until stop is called.
	// fn must not block.
	WatchRevocations(fn func(Revocation)) (stop func())
}

// NodeRecord is what one node last told the store about itself.
type NodeRecord struct {
	Node string
	// Info is the node's own description, JSON, opaque to the store.
	Info json.RawMessage
	// Seen is when the store received the heartbeat.
	Seen time.Time
}

// NodeRegistry keeps the heartbeats of the nodes sharing a store.
type NodeRegistry interface {
	// Heartbeat records that node is alive, described by info, for ttl.
	Heartbeat(ctx context.Context, node string, info json.RawMessage, ttl time.Duration) error
	// Nodes returns the nodes whose last heartbeat's ttl has not run out,
	// sorted by name.
	Nodes(ctx context.Context) ([]NodeRecord, error)
}
