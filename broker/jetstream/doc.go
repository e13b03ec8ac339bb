// Package jetstream is a longpoll.Broker that keeps every topic's log in a
// NATS JetStream stream, so that any number of longpoll nodes share it:
// any node serves any cursor, no session is sticky, and a node that dies
// loses nothing. It needs nats-server 2.9 or later and uses nothing newer:
// no atomic batch publish, per-message TTL, stream metadata or
// multi-filter consumer.
//
// Quick start:
//
//	b, err := jetstream.Open("nats://localhost:4222", jetstream.WithMaxMessages(1000))
//	defer b.Close()
//	srv, err := longpoll.New(b)
//
// # Store URL
//
//	nats://[user:pass@]h1:4222[,h2:4222...][?replicas=N&stream=NAME&prefix=P]
//	tls://...   (the same over TLS)
//
// The stream is NAME (default LONGPOLL), its subjects start with P
// (default longpoll). replicas defaults to the stream's own when it
// exists, else to 3 when the servers form a cluster of three or more and
// 1 otherwise. Credentials files and nkey seeds are options
// (WithCredsFile, WithNkeyFile).
//
// # Storage
//
// The broker keeps:
//
//	stream NAME             P.t.<topic>       the topics' records
//	stream NAME_IDS         P.i.<topic>.<h>   the id index, one message per
//	                                          (topic, id); h is 128 bits of
//	                                          SHA-256 of the id
//	bucket NAME_REVOKED     s<subject>        revocations
//	bucket NAME_NODES       n<node>           heartbeats
//	core subjects           P.w.<topic>       wake-ups (not stored)
//
// A topic's name becomes one subject token by turning each '.' into '='
// (EncodeTopic): '=' is not a topic byte, and every other topic byte is a
// token byte, so every valid topic round-trips (FuzzTopicToken). Subjects
// and names in buckets are unpadded base64url.
//
// Each topic's part of one Append is one JetStream message, a record
// (record.go): headers give its epoch, the seq range it holds, its time,
// the retention cost and data bytes of the epoch's messages before it, the
// stream sequence of the topic's previous record and a token of the
// append; the body holds the messages' ids and data.
//
// # Seqs and batches
//
// A record is published with Nats-Expected-Last-Subject-Sequence set to
// the stream sequence of the topic's last record (0 for none): two nodes
// appending to a topic at once cannot both succeed, and the loser reads
// the new last record and tries again with the next seqs. So seqs are
// gapless from 1, and a topic's part of a batch is all or nothing (one
// message). A node commits its own appends to a topic one group at a
// time: appends that arrive while a record is in flight are queued and
// then committed together as the next record (up to 1000 messages and
// 512 KiB), each keeping its own receipts; a failed group fails each of
// its appends. So a node never races itself for a topic, a hot topic
// costs one publish per group, and an uncontended append, with the
// topic's last record cached from the previous one, is one request.
//
// A batch spanning topics is appended topic by topic: it is not atomic.
// A failure after the first topic (the stream full, NATS lost) leaves it
// appended in part, and Append returns an error matching
// longpoll.ErrPartialAppend that says how many topics were appended: the
// exception the Broker contract allows. A publisher that retries the
// batch completes it; its messages with ids are not appended twice.
//
// # Idempotent ids
//
// An id is looked up in the topic's last record, then in the index. The
// index entry of (topic, id) holds the epoch, seq, time and cost of its
// message, so retention frees the id exactly when it drops the message
// (and the index stream's MaxAge drops the entry). Every append writes
// the ids of the topic's last record into the index before it writes a
// record on top of it, so every record but the last is indexed, whoever
// wrote it and whether or not its writer lived to index it.
//
// A publish whose acknowledgement is lost (a leader failover, a dropped
// connection) is retried within the call: every attempt carries the
// group's Nats-Msg-Id and a token with its number, so the retry finds the
// stored attempt (as the last record, or as the server's duplicate) and
// returns its receipts. A client retrying after the call failed gets its
// ids' duplicates from the last record or the index. Nats-Msg-Id is only
// this extra guard within the stream's duplicate window (2 minutes).
//
// # Retention
//
// Readers see exactly what retention by count (WithMaxMessages), age
// (WithMaxAge) and bytes per topic (WithMaxBytes, counted as at
// MessageOverhead) keeps: Read, Stat, Topics and the id lookup judge each
// message from the last record's seq and cost totals and the message's own
// time and cost, as the memory, bolt and redis stores do, and a gap's
// Missed is exact. JetStream's limits are the backstop that frees the
// space: max_msgs_per_subject is MaxMessages (each record holds at least
// one message, so it never drops a message readers may still get) and
// max_age is MaxAge. Records JetStream dropped earlier (its clock ahead
// of a node's, an operator's max_bytes) count as expired. A record's time
// is the appending node's clock, never earlier than the topic's previous
// record, and age is judged by the reading node's clock: keep the nodes'
// clocks in step (NTP), as skew moves expiry by as much. Bytes per topic
// have no JetStream limit: the hidden messages of a topic over its bytes
// stay on disk until count or age drops them.
//
// The stream's description records all three limits. A node whose
// options differ from the stream's fails to open unless WithUpdateStream
// (--nats-update-stream) lets it change the stream. The stream's max_bytes,
// discard policy and placement are left to the operator: a stream or
// account with no room refuses appends with longpoll.ErrStoreFull.
//
// # Epochs
//
// A topic's epoch is drawn at random (64 bits) by the append that finds
// the topic's subject empty, and carried by every record. A subject is
// empty before the first append, after DeleteTopic (which purges it, and
// the topic's ids from the index), after every record expired, and after
// the stream was purged or recreated: each time the next append starts a
// new epoch, so a reader of the old one gets a GapReset and is never handed
// a position in a new log that merely looks like its own. Within an epoch
// seqs never restart: the last record, which carries the counter, exists
// for as long as the epoch does. No bucket is needed for epochs.
//
// # Reads
//
// A read gets the topic's last record (one request); a reader at the head
// is done. A reader within 64 messages of the head walks back through the
// records by their Lp-Prev, one request each, up to 8 records. Past that,
// and for Stat and listings, the topic's first record is got (one
// request), the record a page starts in is found by a binary search over
// stream sequences with "the topic's first record at or after" gets (tens
// of requests for the largest streams), and the page's records are
// fetched through a short-lived consumer (BenchmarkReadTail,
// BenchmarkReadFar). All gets go to the stream's leader (direct gets are
// off), so an append is visible to every read that starts after it
// returns.
//
// # Wake-ups
//
// Every append publishes an empty core NATS message on P.w.<topic> after
// JetStream acknowledged the record; every node subscribes once to P.w.>
// and wakes its watchers of the topic, and the appending node wakes its
// own directly. A wake-up costs every node one small message per appended
// topic, whether or not it watches the topic, and arrives within a
// millisecond or so on a LAN. Watch never blocks and never waits for the
// server. When the connection drops, and again when it is back, every
// watcher is woken (polls re-read: they get data or a 503
// broker_unavailable); so is every watcher if the client drops wake-ups
// as a slow consumer.
//
// # Admin capabilities
//
// The broker implements longpoll.TopicLister, TopicDeleter, Revoker and
// NodeRegistry.
//
//   - Topics reads the stream's subjects (every topic's name, in pages of
//     the server's stream info), sorts them, and describes the topics of
//     the page from their records. A topic whose messages all expired is
//     listed with Retained 0 until JetStream drops its last record.
//   - DeleteTopic purges the topic's subject and its ids, and wakes its
//     watchers on every node.
//   - Revocations live in the NAME_REVOKED bucket; Revoke is a
//     compare-and-set loop that keeps the later Before and Expires.
//     WatchRevocations watches the bucket (an ordered consumer); after a
//     lost connection it watches anew, delivering every stored revocation
//     again. Revocations deletes the expired ones.
//   - Heartbeats live in the NAME_NODES bucket, stamped by the server's
//     clock (the entry's time); a heartbeat's ttl is judged by the node's
//     clock, and the bucket's own max age (NodesTTL, 24 h) caps it.
//
// # Failures
//
// Every call is bounded by WithTimeout (2 s). An unreachable NATS, a
// stream without a leader or JetStream not answering make calls fail with
// an error wrapping longpoll.ErrUnavailable, and Ping (readiness) fails;
// publishes are not buffered while disconnected. The client reconnects by
// itself, and everything works again when NATS is back, without a new
// broker. Open itself needs NATS: a node does not start without it. Nodes
// started together on a new cluster make the same streams and buckets at
// once, and a replicated one is ready only once its Raft group forms: Open
// tries again for up to WithStartTimeout (60 s), and fails at once only
// for what no retry changes (a stream whose settings differ, a server
// without JetStream). A stream deleted under running nodes makes their
// calls fail the same way until a node starts and creates it again
// (empty: every topic then starts a new epoch).
//
// # Costs
//
//   - A wake-up message per append per node (see Wake-ups).
//   - A read far from the head costs a search and a consumer; a read near
//     it, one to eight requests.
//   - Topics reads every topic's name for each page.
//   - Appends after a record with ids write the index first (one
//     asynchronous publish per id, awaited together), and a publication
//     with an id not in the topic's last record costs an index get
//     (sixteen at a time).
//   - A topic's record is fetched whole: a topic's last batch is read on
//     every append from another node and on every read.
//
// # Guarantees
//
// All methods are safe for concurrent use. Append returns once JetStream
// acknowledged the records: stored on a majority of the stream's replicas.
// Read never returns a message that retention dropped, and reports
// exactly how many a reader missed. A record whose body does not decode
// (damage, a foreign writer) is read as a GapCorrupt of its messages, as
// the Broker contract asks; one whose headers do not cannot be placed in
// the log, and fails the read.
package jetstream
