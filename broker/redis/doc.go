// Package redis is a longpoll.Broker that keeps every topic's log in Redis
// (a single server or a Redis Cluster), so that any number of longpoll
// nodes share it: any node serves any cursor, no session is sticky, and a
// node that dies loses nothing.
//
// Quick start:
//
//	b, err := redis.Open("redis://localhost:6379/0", redis.WithMaxMessages(1000))
//	defer b.Close()
//	srv, err := longpoll.New(b)
//
// # Storage
//
// Each topic T has a hash (epoch, head, first retained seq, retained bytes,
// retained data bytes, time of the newest message), a list of its retained
// messages and a hash of its idempotency ids, under keys that all carry
// the hash tag {T}, so
// that they share one Cluster slot; scripts.go shows the layout. Appends
// and reads are Lua scripts, which Redis runs atomically: two nodes
// appending to one topic at once can never take the same seq or skip one,
// and retention (by count, bytes and age), ids, the epoch and the wake-up
// are updated in the same step. Times come from Redis's clock (TIME, to
// the microsecond), so nodes with skewed clocks still stamp each topic's
// messages in order, and one clock judges their age.
//
// # Admin capabilities
//
// The broker implements longpoll.TopicLister, TopicDeleter, Revoker and
// NodeRegistry; scripts.go lists every key they keep, and none of them
// uses KEYS or SCAN.
//
//   - Topics pages a sorted set of topic names (scored 0, read with
//     ZRANGEBYLEX) that the append script adds its topics to, in the same
//     step as the append: one set on a single Redis, one per hash slot in
//     Cluster, where a bitmap of the slots that have one lets a listing
//     read only those (one script per master, allow-cross-slot-keys, Redis
//     7). Each page's topics are then described by one pipeline of
//     scripts, which drop the messages MaxAge expired (as a read does) and
//     remove from the set the topics whose log is gone, and the page is
//     filled from further names. Retained data bytes are counted in the
//     topic's hash by the scripts that append and drop messages. A topic
//     last appended to before the set existed (an older version of this
//     package) is listed from its next append by this version. In
//     Cluster the append that creates a slot's first index marks the slot
//     in the bitmap first, so it also needs the bitmap's master; if that
//     fails, nothing is appended.
//   - DeleteTopic is one script: the log's keys go, its epoch is left in a
//     tombstone for MaxAge so that the next log's epoch differs from it
//     (and, drawn at random over 64 bits, from every earlier one), the
//     topic leaves the set, and its channel wakes its watchers on every
//     node.
//   - Revocations live in a hash (subject -> before, expires); Revoke is
//     one script that keeps the later of each time and announces the
//     result on a channel, which WatchRevocations subscribes to on the
//     broker's pub/sub connection. Announcements sent while that
//     subscription is down are lost, so once it is active again the hash
//     is read and each stored revocation is passed to the watcher.
//     Revocations drops expired entries from the hash as it reads it.
//   - Heartbeats live in a sorted set scored by expiry and a hash of the
//     nodes' info, stamped and judged by Redis's clock (TIME); Heartbeat
//     and Nodes drop expired entries, and both keys expire once the last
//     heartbeat has.
//
// Times of revocations are kept to the microsecond, like messages'.
//
// # Epochs
//
// A topic's epoch is drawn when its log is created and kept in its hash.
// The keys expire together MaxAge after the topic's last append (when its
// newest message expires). A log that is gone or damaged (keys expired,
// FLUSHALL, a Redis restarted without persistence, a key evicted) is
// deleted on sight and its next append starts a new epoch, so readers of
// the old one get a GapReset and are never handed a position in a new log
// that merely looks like theirs.
//
// A topic that lost only its id index keeps its log: the append script
// keeps the index's size in the topic's hash, and an append that finds
// them differ rebuilds the index from the retained messages before it
// looks an id up, so a retried publish is still a duplicate.
//
// # Batches
//
// On a single Redis every batch is one script call: all or nothing. In
// Cluster a batch whose topics live in several slots cannot be one script:
// it is first checked on every slot (a write script that writes nothing,
// which Redis refuses exactly as it would refuse the append: out of
// memory, a node down, a slot moving), then appended slot by slot. Only a
// node failing between the check and its own append leaves such a batch
// appended in part; Append then returns an error matching
// longpoll.ErrPartialAppend that says how many slots were appended, and
// logs it: the exception the Broker contract allows. Single-topic batches are always atomic. Each
// append call carries a random token, so a call retried after a lost reply
// is not appended twice.
//
// # Wake-ups
//
// Every append PUBLISHes (SPUBLISH in Cluster) an empty message to the
// topic's channel from within its script. A node subscribes only to the
// channels of topics that Watch was called for (SSUBSCRIBE to the slot's
// master in Cluster), so the cost of wake-ups does not grow with the
// topics nobody waits on. Subscriptions share one pub/sub connection per
// Redis node, read by one goroutine. Watch returns once Redis confirmed
// the subscription (or after SubscribeTimeout, or at once while the
// connection is known to be down), so an append that a poll's read misses
// always wakes it. A topic stays subscribed for Linger (30 s) after its
// last watcher stopped, so a topic polled in a tight loop is not
// subscribed anew on every poll. Appends by this node also wake its own
// watchers directly.
//
// When a pub/sub connection drops, every topic it carried is woken (polls
// re-read, and get data or a 503 broker_unavailable); the connection is
// dialled again with backoff, every topic is subscribed again, and woken
// once more since wake-ups sent in between were lost. A silent connection
// is pinged after HealthInterval and declared dead if the ping goes
// unanswered as long again.
//
// # Failures
//
// Every call is bounded by Timeout (2 s) and dials by DialTimeout (1 s).
// A Redis that cannot serve makes calls fail fast with an error wrapping
// protocol.ErrUnavailable (protocol.ErrStoreFull when Redis is out of
// memory under maxmemory with noeviction); Ping fails while Redis or a
// pub/sub connection is down, so readiness turns 503. Everything recovers
// by itself when Redis is back.
//
// # Client
//
// The broker uses go-redis v9 rather than rueidis. Both speak RESP3,
// support Cluster and sharded pub/sub and run Lua scripts with EVALSHA.
// rueidis pipelines automatically and is faster under heavy load, but its
// pub/sub API is a blocking Receive per subscription, retried inside the
// client, that reports neither a lost connection nor a resubscription to
// its caller, and its client dials at construction. go-redis exposes the
// raw pub/sub stream (subscribe confirmations, messages, pongs and read
// errors), which this broker needs to return from Watch only once a
// subscription is active and to wake every topic when a connection drops
// and again when it is back; its clients connect lazily, so a longpoll
// node starts (not ready) while Redis is down. It is also the client the
// Redis project documents first, the most used, and it was on the module
// proxy at the version asked for. Its one gap here, resubscribing all of
// a connection's shard channels in one SSUBSCRIBE (refused across slots),
// is avoided by never reusing a PubSub after an error: the broker dials a
// new one and subscribes slot by slot.
//
// # Guarantees
//
// All methods are safe for concurrent use. Append returns once Redis
// applied the script: as durable as Redis's persistence settings make it
// (see docs/deployment.md). Read never returns a message that retention
// dropped, and reports exactly how many a reader missed.
package redis
