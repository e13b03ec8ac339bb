// Package memory is a longpoll.Broker that keeps every topic's log in the
// process's memory. It suits a single node, tests and development: its logs
// die with the process, and a restarted broker starts every topic in a new
// epoch, so readers see a GapReset rather than stale positions.
//
// Quick start:
//
//	b := memory.New(memory.WithMaxMessages(500), memory.WithMaxAge(time.Hour))
//	defer b.Close()
//	srv, err := longpoll.New(b)
//
// # Guarantees
//
// All methods are safe for concurrent use. An Append is all or nothing and
// is visible to Read and Stat when it returns; every watcher of a topic the
// Append wrote to is woken after the messages are visible, outside any lock
// of the broker. A Watch that returns before an Append makes its messages
// visible is woken by it; one that returns after can read them.
//
// Topics are spread over shards by a hash of their names, each shard with its
// own lock, so appends to different topics rarely contend and no operation
// takes a lock over the whole broker.
//
// # Retention
//
// Each topic keeps at most MaxMessages messages and MaxBytes bytes, counting
// a message as len(Data)+len(ID)+len(Topic)+MessageOverhead; the oldest
// messages go first, but the newest message of a topic is always kept, so
// one message larger than MaxBytes is kept alone. A message older than
// MaxAge is never returned, even before its memory is reclaimed. Expired
// messages are reclaimed when their topic is appended to and by a background
// janitor every ReclaimInterval. A topic whose messages have all expired and
// that nobody watches is forgotten: its next append starts a new epoch.
//
// Across all topics the broker holds at most MaxTopics topics and
// MaxTotalBytes bytes; an Append that would pass either limit fails with an
// error matching protocol.ErrStoreFull and appends nothing.
//
// # Admin capabilities
//
// Broker implements every capability of the admin API, and passes
// brokertest.RunAdmin. What they keep lives in this process's memory and
// is lost with it, like the logs.
//
//   - longpoll.TopicLister: each Topics call visits every topic, shard by
//     shard under its read lock, and keeps the first limit names in a
//     bounded heap (O(topics·log limit) a page) rather than keeping an
//     ordered index that every new topic would have to lock. Retained and
//     Bytes (the sum of the retained messages' len(Data)) are kept as
//     messages are appended and dropped; only messages expired by age and
//     not reclaimed yet are counted off when listed. A topic whose messages
//     have all expired is not listed.
//   - longpoll.TopicDeleter: DeleteTopic drops the log, its messages and
//     ids, frees its room under MaxTopics and MaxTotalBytes, and wakes the
//     topic's watchers after unlocking. No two logs of one Broker share an
//     epoch: epochs are a bijective mix of a random base and a counter, so
//     the next log of a deleted or forgotten topic never reuses one.
//   - longpoll.Revoker: one revocation per subject in a map, kept to the
//     nanosecond in UTC and merged as the contract says; one that ran out
//     by the broker's clock is not returned, not merged with a later one,
//     and forgotten by the janitor. WatchRevocations' fn runs on the
//     revoking goroutine, outside the broker's locks, with the revocation
//     as stored after merging.
//   - longpoll.NodeRegistry: one heartbeat per node in a map, with its own
//     copy of Info, byte for byte, and the broker's clock as Seen; a node
//     whose ttl ran out by that clock is not listed and is forgotten by the
//     janitor. Heartbeat refuses a ttl that is not positive.
package memory
