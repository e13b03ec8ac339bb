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
package memory
