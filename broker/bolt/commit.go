package bolt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/protocol"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

// Group commit. Append puts its request on a queue and waits; one
// goroutine, the committer, takes everything queued, applies it in a single
// bbolt transaction and commits it: one write and one pair of fsyncs for
// all the appends that arrived while the previous commit was syncing. With
// one publisher there is no added delay; with many, the cost of a sync is
// shared.
//
// bbolt's DB.Batch does the same but waits up to MaxBatchDelay (10ms) for
// company, which caps a lone publisher at about 100 appends a second, and
// re-runs the whole batch when one function fails. Here a request that is
// refused (ErrStoreFull) writes nothing, so it fails alone and the batch
// goes on without a retry.

// Limits of one transaction, so that a burst does not make one huge commit
// whose latency every request in it pays.
const (
	maxTxPubs  = 4096
	maxTxBytes = 16 << 20
)

const (
	reqQueued int32 = iota
	reqTaken
	reqCancelled
)

type appendReq struct {
	pubs  []longpoll.Publication
	state atomic.Int32
	// Set by the committer before done is closed.
	receipts []longpoll.Receipt
	err      error
	done     chan struct{}
}

// Append appends pubs atomically and returns once the transaction holding
// them is committed and synced to disk. If ctx ends while the request is
// still queued, nothing is appended and Append returns ctx.Err(); once the
// committer has taken it, Append waits for the outcome. It refuses topic
// names that protocol.ValidateTopic refuses.
func (b *Broker) Append(ctx context.Context, pubs []longpoll.Publication) ([]longpoll.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, errClosed
	}
	if until := b.fullUntil.Load(); until != 0 && b.cfg.now().UnixNano() < until {
		return nil, errDiskFull
	}
	for i := range pubs {
		if err := checkTopic(pubs[i].Topic); err != nil {
			return nil, fmt.Errorf("bolt: publication %d: %w", i, err)
		}
	}
	if len(pubs) == 0 {
		return []longpoll.Receipt{}, nil
	}
	req := &appendReq{pubs: pubs, done: make(chan struct{})}
	b.qmu.Lock()
	if b.closed.Load() {
		b.qmu.Unlock()
		return nil, errClosed
	}
	b.queue = append(b.queue, req)
	b.enqueued.Add(1)
	b.qmu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}

	select {
	case <-req.done:
	case <-ctx.Done():
		if req.state.CompareAndSwap(reqQueued, reqCancelled) {
			return nil, ctx.Err()
		}
		<-req.done
	}
	if req.err != nil {
		return nil, req.err
	}
	b.wakeAppended(req.receipts)
	return req.receipts, nil
}

// checkTopic refuses the topic names the protocol refuses, so that the
// store holds only names the server could serve.
func checkTopic(name string) error { return protocol.ValidateTopic(name) }

// wakeAppended wakes the watchers of each topic that got a new message,
// once per topic.
func (b *Broker) wakeAppended(rs []longpoll.Receipt) {
	if len(rs) == 1 {
		if !rs[0].Duplicate {
			b.watchers.wake(rs[0].Topic)
		}
		return
	}
	woken := make(map[string]bool)
	for i := range rs {
		r := &rs[i]
		if r.Duplicate || woken[r.Topic] {
			continue
		}
		woken[r.Topic] = true
		b.watchers.wake(r.Topic)
	}
}

func (b *Broker) commitLoop() {
	defer b.wg.Done()
	var batch []*appendReq
	for {
		select {
		case <-b.kick:
		case <-b.stopping:
			// Close refuses new requests before closing stopping, so
			// this last drain leaves none behind.
			for batch = b.take(batch[:0]); len(batch) > 0; batch = b.take(batch[:0]) {
				b.commit(batch)
			}
			return
		}
		for batch = b.take(batch[:0]); len(batch) > 0; batch = b.take(batch[:0]) {
			b.commit(batch)
			// Let the publishers just answered queue their next
			// appends before taking the next batch: otherwise they
			// miss it and wait a whole commit, and batches settle at
			// half the publishers.
			runtime.Gosched()
		}
	}
}

// take moves the requests for the next transaction from the queue into
// batch, leaving out those whose callers gave up.
func (b *Broker) take(batch []*appendReq) []*appendReq {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	n, pubs, size := 0, 0, 0
	for _, r := range b.queue {
		if n > 0 && (pubs+len(r.pubs) > maxTxPubs || size > maxTxBytes) {
			break
		}
		n++
		if !r.state.CompareAndSwap(reqQueued, reqTaken) {
			continue
		}
		batch = append(batch, r)
		pubs += len(r.pubs)
		for i := range r.pubs {
			size += len(r.pubs[i].Data)
		}
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

// commit applies the requests of batch in one transaction and tells each
// its outcome.
func (b *Broker) commit(batch []*appendReq) {
	live := batch
	for len(live) > 0 {
		tx, err := b.db.Begin(true)
		if err != nil {
			b.fail(live, err)
			return
		}
		now := b.cfg.now().UnixNano()
		failed := -1
		for i, r := range live {
			var fatal error
			r.receipts, r.err, fatal = b.safeApply(tx, r.pubs, now)
			if fatal != nil {
				r.receipts, r.err = nil, b.writeError("append", fatal)
				failed = i
				break
			}
		}
		if failed >= 0 {
			// A write failed half way: nothing of this transaction may
			// stay. The failing request is answered; the others are
			// applied again without it.
			_ = tx.Rollback()
			b.log.Error("append failed", "err", live[failed].err)
			close(live[failed].done)
			live = slices.Delete(slices.Clone(live), failed, failed+1)
			continue
		}
		if err := tx.Commit(); err != nil {
			b.fail(live, err)
			return
		}
		b.commits.Add(1)
		for _, r := range live {
			close(r.done)
		}
		return
	}
}

func (b *Broker) fail(reqs []*appendReq, err error) {
	err = b.writeError("commit", err)
	b.log.Error("commit failed", "err", err)
	for _, r := range reqs {
		r.receipts, r.err = nil, err
		close(r.done)
	}
}

// fullRetry is how long Append refuses at once, with ErrStoreFull, after a
// write failed for lack of disk space: a failed commit costs bbolt a walk
// of every page (to rebuild its free list), so appends do not try again
// more often than this.
const fullRetry = time.Second

var errDiskFull = fmt.Errorf("bolt: the disk is full: %w", protocol.ErrStoreFull)

// writeError is what an Append learns of a failed write: ErrStoreFull when
// the disk is full, ErrDamaged when the store's records are, else
// ErrUnavailable.
func (b *Broker) writeError(op string, err error) error {
	switch {
	case isDiskFull(err):
		b.fullUntil.Store(b.cfg.now().Add(fullRetry).UnixNano())
		return fmt.Errorf("bolt: %s: the disk is full: %w: %w", op, protocol.ErrStoreFull, err)
	case isDamage(err):
		return fmt.Errorf("bolt: %s: %w: %w", op, ErrDamaged, err)
	}
	return unavailable(op, err)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("bolt: %s: %w: %w", op, protocol.ErrUnavailable, err)
}

// safeApply is apply with bbolt's panics on a damaged file turned into
// errors, so one bad page fails appends instead of the process.
func (b *Broker) safeApply(tx *bbolt.Tx, pubs []longpoll.Publication, now int64) (rs []longpoll.Receipt, reject, fatal error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			rs, reject, fatal = nil, nil, fmt.Errorf("%w: %v", errDamaged, r)
		}
	}()
	return b.apply(tx, pubs, now)
}

// apply writes one Append's publications in tx, as if each were appended
// alone, in order. A refusal (reject) is decided before anything is
// written; a fatal error may leave partial writes, so the caller must roll
// tx back.
func (b *Broker) apply(tx *bbolt.Tx, pubs []longpoll.Publication, now int64) (rs []longpoll.Receipt, reject, fatal error) {
	s := b.newStore(tx)
	// The topics of this Append: a short list searched in order, or a map
	// for large batches.
	topics := make([]*topicWork, 0, 1)
	var byName map[string]*topicWork
	if len(pubs) > 8 {
		byName = make(map[string]*topicWork)
	}
	find := func(name string) *topicWork {
		if byName != nil {
			return byName[name]
		}
		for _, w := range topics {
			if w.name == name {
				return w
			}
		}
		return nil
	}

	// Refuse before writing anything.
	fresh := 0
	if len(pubs) == 1 {
		if s.topics.Get([]byte(pubs[0].Topic)) == nil {
			fresh = 1
		}
	} else {
		seen := make(map[string]bool, min(len(pubs), 64))
		for i := range pubs {
			name := pubs[i].Topic
			if !seen[name] {
				seen[name] = true
				if s.topics.Get([]byte(name)) == nil {
					fresh++
				}
			}
		}
	}
	count, err := getUint64(s.meta.Get(keyTopicCount))
	if err != nil {
		return nil, nil, err
	}
	if fresh > 0 && count+uint64(fresh) > uint64(b.cfg.maxTopics) {
		return nil, fmt.Errorf("bolt: %d topics already, %d more would pass the limit of %d: %w",
			count, fresh, b.cfg.maxTopics, protocol.ErrStoreFull), nil
	}

	rs = make([]longpoll.Receipt, len(pubs))
	for i := range pubs {
		p := &pubs[i]
		w := find(p.Topic)
		if w == nil {
			if w, err = s.load(p.Topic); err != nil {
				return nil, nil, err
			}
			if w == nil {
				if w, err = s.create(p.Topic, now); err != nil {
					return nil, nil, err
				}
				count++
			} else if _, err := s.dropExpired(w, now, -1); err != nil {
				return nil, nil, err
			}
			topics = append(topics, w)
			if byName != nil {
				byName[w.name] = w
			}
		}
		if rs[i], err = s.append(w, p, now); err != nil {
			return nil, nil, err
		}
	}
	for _, w := range topics {
		if err := s.save(w); err != nil {
			return nil, nil, err
		}
	}
	if fresh > 0 {
		if err := s.meta.Put(keyTopicCount, putUint64(count)); err != nil {
			return nil, nil, err
		}
	}
	return rs, nil, nil
}

// store is the root buckets of one transaction and the limits.
type store struct {
	cfg    *config
	meta   *bbolt.Bucket
	topics *bbolt.Bucket
	msgs   *bbolt.Bucket
	ids    *bbolt.Bucket
	due    *bbolt.Bucket
	// mended logs damage mended in a topic: once each, so not limited.
	mended func(topic string, err error)
}

func (b *Broker) newStore(tx *bbolt.Tx) *store {
	return &store{
		cfg:    &b.cfg,
		meta:   tx.Bucket(bucketMeta),
		topics: tx.Bucket(bucketTopics),
		msgs:   tx.Bucket(bucketMsgs),
		ids:    tx.Bucket(bucketIDs),
		due:    tx.Bucket(bucketDue),
		mended: func(topic string, err error) {
			b.log.Warn("damaged data in the store, mended", "topic", topic, "err", err)
		},
	}
}

// topicWork is a topic being changed in a write transaction.
type topicWork struct {
	name string
	key  []byte
	st   topicState
	msgs *bbolt.Bucket
	ids  *bbolt.Bucket // nil until the topic has an ID
}

func (w *topicWork) get(seq uint64) []byte { return w.msgs.Get(seqKey(seq)) }

// load reads a topic's state; nil if the topic does not exist.
func (s *store) load(name string) (*topicWork, error) {
	key := []byte(name)
	raw := s.topics.Get(key)
	if raw == nil {
		return nil, nil
	}
	st, err := decodeTopicState(raw)
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", name, err)
	}
	msgs := s.msgs.Bucket(key)
	if msgs == nil {
		// Damage: the messages are gone. An empty bucket takes their
		// place; their seqs read as missing (corrupt gaps) until
		// retention drops them, and their bytes no longer count.
		if msgs, err = s.newBucket(key); err != nil {
			return nil, fmt.Errorf("topic %q: %w", name, err)
		}
		st.bytes = 0
		s.mended(name, errors.New("the messages bucket was missing: started again empty"))
	}
	// Keys are appended in order: full pages waste no space.
	msgs.FillPercent = 1.0
	return &topicWork{name: name, key: key, st: st, msgs: msgs, ids: s.ids.Bucket(key)}, nil
}

// create starts a topic's log with a new epoch.
func (s *store) create(name string, now int64) (*topicWork, error) {
	key := []byte(name)
	msgs, err := s.newBucket(key)
	if err != nil {
		return nil, fmt.Errorf("topic %q: create messages bucket: %w", name, err)
	}
	msgs.FillPercent = 1.0
	if s.ids.Bucket(key) != nil {
		if err := s.ids.DeleteBucket(key); err != nil {
			return nil, err
		}
	}
	w := &topicWork{
		name: name,
		key:  key,
		st:   topicState{epoch: newEpoch(), first: 1, sumFrom: 1, due: expiresAt(now, s.cfg.maxAge)},
		msgs: msgs,
	}
	if err := s.due.Put(dueKey(w.st.due, name), []byte{}); err != nil {
		return nil, err
	}
	return w, nil
}

// newBucket makes an empty messages bucket at key, in place of whatever
// damage left there (a bucket or value without a topic record).
func (s *store) newBucket(key []byte) (*bbolt.Bucket, error) {
	if s.msgs.Bucket(key) != nil {
		if err := s.msgs.DeleteBucket(key); err != nil {
			return nil, err
		}
	} else if s.msgs.Get(key) != nil {
		if err := s.msgs.Delete(key); err != nil {
			return nil, err
		}
	}
	return s.msgs.CreateBucket(key)
}

func newEpoch() uint64 {
	for {
		if e := rand.Uint64(); e != 0 {
			return e
		}
	}
}

func (s *store) save(w *topicWork) error {
	return s.topics.Put(w.key, w.st.encode())
}

// append appends one publication to w, or finds it is a duplicate.
func (s *store) append(w *topicWork, p *longpoll.Publication, now int64) (longpoll.Receipt, error) {
	r := longpoll.Receipt{Topic: w.name, Epoch: w.st.epoch}
	var idk []byte
	if p.ID != "" {
		idk = idKey(p.ID)
		if w.ids != nil {
			if v := w.ids.Get(idk); v != nil {
				seq, err := getUint64(v)
				if err != nil {
					return r, fmt.Errorf("topic %q id: %w", w.name, err)
				}
				// Mappings go with the messages they point to; the
				// check only guards against a stale one.
				if seq >= w.st.first && seq <= w.st.head {
					r.Seq, r.Duplicate = seq, true
					return r, nil
				}
			}
		}
	}
	t := max(now, w.st.lastTime)
	seq := w.st.head + 1
	if err := w.msgs.Put(seqKey(seq), encodeMessage(t, p.ID, p.Data)); err != nil {
		return r, err
	}
	if idk != nil {
		if w.ids == nil {
			ids, err := s.ids.CreateBucketIfNotExists(w.key)
			if err != nil {
				return r, err
			}
			w.ids = ids
		}
		if err := w.ids.Put(idk, putUint64(seq)); err != nil {
			return r, err
		}
	}
	w.st.head = seq
	w.st.lastTime = t
	w.st.bytes += uint64(MessageSize(w.name, p.ID, p.Data))
	// Count and size limits; the newest message always stays.
	for w.st.stored() > 1 &&
		(w.st.stored() > uint64(s.cfg.maxMessages) || w.st.bytes > uint64(s.cfg.maxBytes)) {
		if err := s.dropFirst(w); err != nil {
			return r, err
		}
	}
	r.Seq = seq
	return r, nil
}

// dropFirst deletes w's oldest stored message and its ID mapping. A
// message that cannot be read is deleted all the same: its size is then
// reckoned from its stored length, and its ID mapping, if it had one,
// stays (harmless: a mapping to a seq below first is ignored).
func (s *store) dropFirst(w *topicWork) error {
	key := seqKey(w.st.first)
	v := w.msgs.Get(key)
	_, id, data, err := decodeMessage(v, w.st.first >= w.st.sumFrom)
	size := uint64(len(w.name) + len(id) + len(data) + MessageOverhead)
	if err != nil {
		size = uint64(len(w.name) + len(v) + MessageOverhead)
	}
	if len(id) > 0 && w.ids != nil {
		idk := idKey(string(id))
		if cur := w.ids.Get(idk); cur != nil {
			if seq, _ := getUint64(cur); seq == w.st.first {
				if err := w.ids.Delete(idk); err != nil {
					return err
				}
			}
		}
	}
	if err := w.msgs.Delete(key); err != nil {
		return err
	}
	w.st.first++
	w.st.bytes -= min(size, w.st.bytes)
	return nil
}

// dropExpired deletes w's stored messages that are expired at now, oldest
// first, at most budget of them if budget >= 0. It reports how many it
// deleted.
func (s *store) dropExpired(w *topicWork, now int64, budget int) (int, error) {
	n := 0
	for w.st.first <= w.st.head && (budget < 0 || n < budget) {
		t := timeBound(w.get, w.st, w.st.first)
		if !expired(t, now, s.cfg.maxAge) {
			break
		}
		if err := s.dropFirst(w); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// expiresAt is the first instant at which a message stamped t is expired.
func expiresAt(t int64, maxAge time.Duration) int64 {
	return addNanos(addNanos(t, maxAge), 1)
}

// addNanos is t+d, saturating instead of overflowing.
func addNanos(t int64, d time.Duration) int64 {
	if d > 0 && t > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return t + int64(d)
}

// expired reports whether a message stamped t is older than maxAge at now.
func expired(t, now int64, maxAge time.Duration) bool {
	return now-t > int64(maxAge)
}
