// Package bolt is a durable longpoll.Broker for a single node: every
// topic's log lives in one bbolt file in a data directory, survives
// restarts and crashes, and is shared by nothing but this process.
//
// Quick start:
//
//	b, err := bolt.Open("/var/lib/longpoll", bolt.WithMaxMessages(1000))
//	if err != nil { ... }
//	defer b.Close()
//	srv, err := longpoll.New(b)
//
// # Durability
//
// Append returns only once the transaction holding its messages is
// committed: bbolt has written the changed pages, synced the file
// (fdatasync), written the new meta page and synced again. An acknowledged
// message survives a crash of the process or the machine, provided the
// disk honours fsync. An Append that failed or had not returned when the
// process died left nothing: a transaction is all or nothing, and bbolt
// needs no recovery on the next Open beyond taking the newer of its two
// meta pages.
//
// Concurrent Appends share transactions (group commit). One goroutine, the
// committer, takes every Append queued while the previous commit was
// syncing and applies them in one transaction, each Append still all or
// nothing: one that is refused (protocol.ErrStoreFull) writes nothing and
// fails alone. A lone publisher pays one commit per Append and no delay;
// many share the cost of the syncs.
//
// After Close and Open, every topic keeps its epoch, head and messages, so
// a reader holding a Position from before the restart resumes with no gap
// and no duplicate. Idempotency IDs and the never-decreasing message times
// are stored too and hold across restarts.
//
// # On-disk layout
//
// The data directory holds one file, FileName ("longpoll.db"), a bbolt
// B+tree with these root buckets (integers are big-endian, so keys sort as
// numbers):
//
//	meta     "format" -> format version (2); "topics" -> number of topics;
//	         "clean" -> 1, only while the store is closed after a clean stop
//	topics   name -> epoch, head seq, first stored seq, stored bytes,
//	         newest message time, due time, first checksummed seq
//	         (7 x 8 bytes), CRC-32C of those 56 bytes
//	msgs     name -> bucket: seq (8 bytes) -> time (8 bytes, Unix ns),
//	         uvarint ID length, ID, data, CRC-32C of all that
//	ids      name -> bucket: 0x00 ID (or 0x01 SHA-256 of IDs over 1 KiB)
//	         -> seq, for the stored messages that have an ID
//	due      due time (8 bytes) + name -> "", one per topic
//	revoked  subject -> Before, Expires (each Unix seconds, 8 bytes, and
//	         nanoseconds, 4 bytes), CRC-32C of those 24 bytes
//
// The revoked bucket came after format 2 was first written: Open adds it
// to a file that lacks it (format 1 or 2 alike). It changes no record that
// format 2 had, and an older longpoll, which reads format 2, ignores it,
// so the format version stays 2.
//
// Format 1 had no checksums: its topic records are the first 48 bytes
// alone, its values end with the data. Open reads such a file as it is and
// marks it format 2 (so an older longpoll refuses it); a topic record
// rewritten since says from which seq on its values carry a checksum, and
// values without one are served only if they hold JSON.
//
// A new store is written whole under a temporary name and linked into
// place, so a crash during the first start leaves no file or a complete
// one. Open refuses, with an error that names the file and says what to
// do: a file written by a newer format version; an empty or truncated file
// (shorter than the pages its meta page counts); a file that is not a
// longpoll store or whose pages are damaged (Open walks every page with
// bounds-checked code of its own before bbolt, whose own walk runs on a
// goroutine where damage kills the process, may see them); after a stop
// that was not clean (no "clean" mark: a crash, a kill, a lost machine),
// a file that fails bbolt's full consistency check (Tx.Check); and a
// directory locked by another process (bbolt's flock, waited for one
// second by default).
//
// # Damage
//
// A stored message whose checksum fails, that does not decode, whose key
// is missing, or on whose page bbolt panics is never served: Read skips it
// and reports a protocol.GapCorrupt with the exact number skipped, and
// delivery goes on after it. Its time, unknown, is taken as that of the
// next readable message, so it expires no sooner than it would have;
// retention drops it like any other. Reads recover bbolt's panics and
// memory faults (debug.SetPanicOnFault). A topic whose messages bucket is
// gone reads as all unreadable, and the next write to it puts an empty one
// in its place. Damage to a topic's record fails that topic's calls with
// ErrDamaged (500 internal). Damage found by reads is logged, at most a
// line a second; a mend, once.
//
// # A full disk
//
// An append whose write fails for lack of space (ENOSPC, EDQUOT, EFBIG)
// fails with protocol.ErrStoreFull, and for the next second appends are
// refused at once (each failed commit costs bbolt a walk of every page to
// rebuild its free list). Nothing acknowledged is lost; reads go on, and
// Ping stays nil: readiness does not fail while the disk is full.
//
// # Retention
//
// A topic keeps at most MaxMessages messages and MaxBytes bytes (counted by
// MessageSize, as the memory broker counts them), dropping the oldest first
// but always keeping the newest; Append deletes them in its own
// transaction, with their ID mappings. A message older than MaxAge is left
// out at read time, found by a binary search since times never decrease,
// so readers never see it even before its space is reused; missed counts
// are exact because seqs have no holes.
//
// The space of expired messages is reclaimed by Append for the topics it
// touches and, for the others, by a background goroutine that runs every
// ReclaimInterval and deletes in small transactions (at most 2048 messages
// or 256 topics each) so that publishes never wait long behind it. It finds
// its work through the due bucket, whose key for a topic is never later
// than its oldest message's expiry; appends to an existing topic never
// rewrite it. A topic with nothing left and no watcher is forgotten: its
// records are deleted, and its next Append starts a new log with a new
// random epoch, so a reader of the old one gets a GapReset.
//
// bbolt reuses the pages that deletes free, so under a steady stream the
// file stops growing once it holds what retention keeps plus some slack.
// It never shrinks on its own (bbolt's compact command can rewrite it while
// the server is stopped).
//
// # bbolt settings
//
//   - NoFreelistSync with the hashmap freelist: deletes from the front of
//     every topic leave many free pages, and a synced freelist would be
//     rewritten, in full, on every commit. Instead bbolt rebuilds it when
//     the file is opened, by walking every page, which with Open's own walk
//     before it is the price of Open: it grows with the file (TestOpenCost
//     measures it). The hashmap freelist allocates in constant
//     time however fragmented the free space is.
//   - A 1 GiB initial memory map (address space, not memory): growing the
//     map waits for every open read transaction, a Backup included, so a
//     large first map keeps appends from stalling behind readers. The file
//     still grows only as needed, in bbolt's 16 MiB steps (sparse, so a new
//     store shows 16 MiB but uses a few KiB of disk).
//   - Timeout on the file lock, so that a second server on the same
//     directory fails instead of waiting forever.
//
// # Watch and concurrency
//
// All methods are safe for concurrent use. Watch is in-process: wake is
// called on the appending goroutine after the commit, when the messages are
// visible to Read, outside every lock, once per topic of the Append.
// Watchers are kept in sharded maps, so watching and waking never take a
// broker-wide lock. Reads are bbolt read transactions: a consistent
// snapshot that the writer does not block, except in the rare moment it
// grows the memory map.
//
// Backup and BackupFile copy a consistent snapshot of the file while the
// broker runs, revocations included; put the copy as FileName in an empty
// directory to restore.
//
// # Admin capabilities
//
// Broker implements the admin API's four optional capabilities:
//
//   - longpoll.TopicLister: Topics is one read transaction, a cursor seek
//     in the topics bucket (keyed by name, so in byte order) to prefix or
//     after, and a step per topic listed; never a walk of the messages of
//     topics not listed. Each topic's Epoch, Head and Oldest are Stat's;
//     Retained counts the messages from the oldest not expired by age to
//     the head, whether or not retention has reclaimed the expired ones'
//     space; Bytes sums the data lengths of those messages, a cursor step
//     each (the record's byte count holds names, IDs and overhead too, so
//     it cannot give it); LastPublish is the newest message's time, zero
//     when nothing is retained. A topic whose messages all expired is
//     listed with Retained 0 until the reclaimer forgets it; a topic with a
//     damaged record is left out (and logged). Names are ordered by
//     their bytes; the store takes only names protocol.ValidateTopic takes.
//   - longpoll.TopicDeleter: DeleteTopic deletes the topic's record,
//     messages bucket, IDs bucket and due key in one transaction, committed
//     and synced as an Append's is, then wakes the topic's watchers. The
//     space is freed in that transaction, not lazily: deleting a bucket
//     releases its pages whole. The next Append starts a new log with a
//     new random 64-bit epoch, as after the reclaimer forgets a topic: no
//     record of old epochs is kept, so a new one equals an earlier one of
//     the topic with probability 2^-64 each.
//   - longpoll.Revoker: revocations live in the revoked bucket, written in
//     transactions committed and synced as appends are, so they survive a
//     restart and a backup carries them. Revoke deletes the expired ones in
//     its transaction; Revocations leaves out those not yet deleted.
//     WatchRevocations is in-process, like Watch: a bolt file has one
//     process, so the Revokes of this Broker are all there are.
//   - longpoll.NodeRegistry: heartbeats are kept in memory, not in the
//     file: one process holds the file, so its heartbeats are the only
//     ones, and they mean nothing after it stops. Nodes forgets the lapsed
//     ones.
//
// # Why bbolt rather than Pebble
//
// The workload is small values appended by (topic, seq), range reads of a
// topic's tail by seq, deletes from the front of each topic, and one
// durable sync per acknowledged publish, shared by group commit. Pebble, an
// LSM tree, makes each write cheaper (a WAL append and a memtable insert,
// one fsync per group instead of bbolt's two) and scales to far higher write
// rates. But deletes from the front become tombstones that every read
// starting at a topic's oldest message must skip until compaction drops
// them, space comes back only through compaction (more write and space
// amplification in the background), and its go.mod requires some
// thirty-five modules directly (DataDog/zstd, which needs cgo, among them),
// plus memtable, cache and compaction tuning. bbolt
// is one copy-on-write B+tree file with no dependency beyond
// golang.org/x/sys: a read is a cursor seek in a memory-mapped snapshot, a
// deleted page is reused directly so the file stays bounded without
// compaction, a backup is one read transaction, and crash recovery is
// picking the newer meta page. Its costs, a single writer, two fsyncs and
// whole-page writes per commit, are what group commit amortises: the more
// concurrent publishers, the more appends one commit carries
// (BenchmarkAppend reports appends/commit and publishes/s for 1, 16 and
// 256 publishers). A node that outgrows one writer is the point to add a
// Pebble broker beside this one.
package bolt
