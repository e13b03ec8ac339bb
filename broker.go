package longpoll

import (
	"context"
	"encoding/json"

	"github.com/longpoll/longpoll/protocol"
)

// The protocol's vocabulary lives in package protocol, which the client
// shares; these aliases keep it in this package's API.
type (
	// Position is a reader's place in one topic's log; see protocol.Position.
	Position = protocol.Position
	// Message is one message of a topic's log; see protocol.Message.
	Message = protocol.Message
	// Gap reports messages a reader can no longer get; see protocol.Gap.
	Gap = protocol.Gap
	// GapReason says why a reader missed messages; see protocol.GapReason.
	GapReason = protocol.GapReason
)

// Gap reasons; see protocol.GapExpired and its siblings.
const (
	GapExpired = protocol.GapExpired
	GapReset   = protocol.GapReset
	GapCorrupt = protocol.GapCorrupt
)

// Publication is a message as a publisher hands it to a broker.
type Publication struct {
	Topic string
	// ID, when not "", makes the append idempotent: a second publication with
	// the same ID on the same topic while the first is retained is not
	// appended again; its Receipt carries the original seq.
	ID   string
	Data json.RawMessage
}

// Receipt tells where a Publication was appended.
type Receipt struct {
	Topic string
	Epoch uint64
	Seq   uint64
	// Duplicate reports that the ID was seen before and nothing was appended;
	// Seq is then the original message's seq.
	Duplicate bool
}

// Page is the result of one Broker.Read.
type Page struct {
	// Gap, when not nil, comes before Messages.
	Gap *Gap
	// Messages are in seq order, at most the limit asked for.
	Messages []Message
	// Next is the position to read from next time: after the last message of
	// Messages, or after the gap when there are none, or the position read
	// from when there was nothing new.
	Next Position
}

// TopicStat describes one topic's log now.
type TopicStat struct {
	// Epoch of the topic's current log; 0 if the topic has none.
	Epoch uint64
	// Head is the seq of the newest message ever appended in this epoch; 0 if none.
	Head uint64
	// Oldest is the seq of the oldest message a reader can still get; 0 if
	// none is retained.
	Oldest uint64
}

// Broker is a store of per-topic append-only logs shared by every node that
// uses it. Implementations live in the broker/ packages; every one passes the
// conformance suite in broker/brokertest unchanged.
//
// All methods are safe for concurrent use.
type Broker interface {
	// Append appends pubs in the order given and returns one Receipt per
	// Publication, in the same order. It is all or nothing: on error nothing
	// was appended. It returns only once every message is as durable as the
	// broker promises, and visible to Read. Callers validate topics and data
	// first; a broker may still refuse with ErrStoreFull or ErrUnavailable.
	//
	// One exception, which a broker states in its documentation: a broker
	// that keeps topics on shards it cannot change in one step (broker/redis
	// on a Redis Cluster, for a batch whose topics span hash slots;
	// broker/jetstream, for any batch spanning topics, each topic's part
	// being one JetStream message) may append such a batch in part when a
	// shard or the store fails between the parts. It then returns an error
	// matching ErrPartialAppend.
	// A batch of one topic is always all or nothing, and the messages of a
	// batch that carry ids are appended once each whatever the retries: a
	// publisher that retries the batch completes it without duplicates.
	Append(ctx context.Context, pubs []Publication) ([]Receipt, error)

	// Read returns up to limit messages of topic after the position from.
	//
	//   - from's epoch is the topic's current epoch: the messages with a seq
	//     above from.Seq; if retention dropped some of them, a GapExpired with
	//     the exact number missed comes first and reading continues at the
	//     oldest retained message. from.Seq above the head is a GapReset,
	//     and reading continues at the oldest retained message.
	//   - from is the zero Position: as if it were (current epoch, 0).
	//   - any other epoch: a GapReset, and reading continues at the current
	//     log's oldest retained message. If the topic has no log at all, Next
	//     is the zero Position.
	//
	// A reader never gets a message that retention has dropped, even if its
	// space is not reclaimed yet.
	//
	// A broker that finds stored messages it cannot read back (damaged data)
	// never returns them and never fails the Read for them: when the first
	// messages to read, seqs s..s+n-1, are unreadable, the Page's Gap is a
	// GapCorrupt with Missed n, Messages continue from s+n, and Next is
	// (epoch, s+n-1) when no message follows: the reader's position moves
	// past them exactly as past an expired gap. Unreadable messages that
	// follow readable ones end the Page before them, and the next Read
	// reports them. A GapExpired and a GapCorrupt never share a Page: the
	// expired one comes first. Damage a broker cannot bound to a topic's
	// messages (its own records) is an error.
	Read(ctx context.Context, topic string, from Position, limit int) (Page, error)

	// Stat describes the topic's log. A topic that never had a message has
	// the zero TopicStat.
	Stat(ctx context.Context, topic string) (TopicStat, error)

	// Watch asks the broker to call wake(topic) after every append to topic,
	// by this node or any other sharing the broker, until stop is called.
	// wake must not block; it may be called from any goroutine and may be
	// called spuriously, even just after stop returns. The server calls Watch when the first poll on this
	// node waits on a topic and stop when the last one leaves.
	Watch(topic string, wake func(topic string)) (stop func())

	// Close releases the broker; a second Close is harmless. Other calls
	// after Close return an error satisfying errors.Is(err, ErrClosed).
	Close() error
}

// Pinger is implemented by brokers that can tell whether their store is
// reachable. The server's readiness check uses it.
type Pinger interface {
	Ping(ctx context.Context) error
}
