package jetstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/protocol"
)

var (
	_ longpoll.Broker = (*Broker)(nil)
	_ longpoll.Pinger = (*Broker)(nil)
)

// MinServerVersion is the oldest nats-server Open accepts: the JetStream
// features the broker uses (per-subject expected sequences, purges by
// subject, message gets by subject, key-value buckets) are all in 2.9.
const MinServerVersion = "2.9.0"

// Broker is the NATS JetStream longpoll.Broker. Open one with Open; the
// zero Broker is not usable.
type Broker struct {
	cfg    config
	desc   string
	name   string // the topics' stream
	prefix string

	nc          *nats.Conn
	js          natsjs.JetStream
	stream      natsjs.Stream // the topics' logs
	ids         natsjs.Stream // the id index
	revocations natsjs.KeyValue
	nodes       natsjs.KeyValue
	wakeSub     *nats.Subscription

	w *waker

	closed    atomic.Bool
	closeOnce sync.Once
	// ctx is the broker's lifecycle: Close cancels it, ending the
	// goroutines of revocation watchers, which wg counts.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	topics map[string]*topicLock
	// recon is closed, and replaced, when the connection is back after a
	// loss: revocation watchers then watch anew.
	recon chan struct{}

	// afterPublish, when set, sees every record's publish and may change
	// its outcome: a test loses acknowledgements there.
	afterPublish func(err error) error
}

// topicLock serialises this node's appends to one topic, so that they do
// not race each other for the subject's expected sequence, and caches the
// topic's last record between them.
type topicLock struct {
	refs int // guarded by Broker.mu

	// sem is held by the append that commits the queue (one at a time).
	sem chan struct{}
	qmu sync.Mutex
	// queue holds the appends waiting to be committed, in arrival order;
	// the holder of sem commits them together, as one record.
	queue []*request

	// Guarded by sem:
	valid   bool    // head is known: the record, or nil for no log
	head    *record //
	indexed bool    // head's ids are in the index already
}

// request is one Append's part for a topic, waiting to be committed.
type request struct {
	pubs     []longpoll.Publication
	taken    bool // guarded by topicLock.qmu: a commit took it
	receipts []longpoll.Receipt
	err      error
	done     chan struct{}
}

// Bounds of a group of appends committed as one record, within the
// default max_payload (1 MiB) of a nats-server.
const (
	groupMessages = 1000
	groupBytes    = 512 << 10
)

// maxCachedTopics bounds the topics whose last record stays cached
// between appends.
const maxCachedTopics = 4096

// Open connects to the NATS servers named by rawURL:
//
//	nats://[user:pass@]host:port[,host:port...][?replicas=N&stream=NAME&prefix=P]
//	tls://...   (the same over TLS)
//
// and makes sure the stream of the topics' logs, the stream of the id
// index and the key-value buckets of revocations and nodes exist. A
// stream whose limits differ from the options is an error, unless
// WithUpdateStream is given. Open fails if NATS cannot be reached; once
// open, the broker rides out outages (calls fail with
// protocol.ErrUnavailable until NATS is back).
func Open(rawURL string, opts ...Option) (*Broker, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
	}
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("jetstream: store URL: %w", err)
	}
	b := &Broker{
		cfg:    cfg,
		desc:   "nats " + u.Redacted(),
		name:   cmpOr(u.Stream, DefaultStream),
		prefix: cmpOr(u.Prefix, DefaultPrefix),
		topics: make(map[string]*topicLock),
		recon:  make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.w = newWaker()

	nopts := []nats.Option{
		nats.Name("longpoll"),
		nats.Timeout(cfg.dialTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		// Fail publishes at once while disconnected rather than
		// buffering them for a server that may never come back.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.closed.Load() || err == nil { // nil: closed by this process
				return
			}
			cfg.log.Warn("nats connection lost; waking every watched topic", "error", err)
			b.w.wakeAll()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			cfg.log.Info("nats connection back", "server", nc.ConnectedUrlRedacted())
			b.w.wakeAll()
			b.mu.Lock()
			close(b.recon)
			b.recon = make(chan struct{})
			b.mu.Unlock()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				// Wake-ups were dropped: wake every watcher instead.
				b.w.wakeAll()
			}
			cfg.log.Warn("nats asynchronous error", "error", err)
		}),
	}
	if u.HasUser {
		nopts = append(nopts, nats.UserInfo(u.User, u.Pass))
	}
	if cfg.credsFile != "" {
		nopts = append(nopts, nats.UserCredentials(cfg.credsFile))
	}
	if cfg.nkeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.nkeyFile)
		if err != nil {
			return nil, fmt.Errorf("jetstream: nkey file: %w", err)
		}
		nopts = append(nopts, o)
	}
	nc, err := nats.Connect(strings.Join(u.servers(), ","), nopts...)
	if err != nil {
		return nil, fmt.Errorf("jetstream: connect to %s: %w: %w", u.Redacted(), protocol.ErrUnavailable, err)
	}
	b.nc = nc
	if err := b.setup(u); err != nil {
		b.cancel()
		nc.Close()
		return nil, err
	}
	return b, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// setup checks the server and makes the streams, buckets and the wake-up
// subscription.
func (b *Broker) setup(u storeURL) error {
	v := b.nc.ConnectedServerVersion()
	if !versionAtLeast(v, MinServerVersion) {
		return fmt.Errorf("jetstream: nats-server %s is older than %s, the oldest this store supports", v, MinServerVersion)
	}
	js, err := natsjs.New(b.nc, natsjs.WithDefaultTimeout(b.cfg.timeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b.js = js
	// Nodes started together on a new cluster create the same streams and
	// buckets at once, and each replicated one needs its Raft group to
	// form: an attempt that times out, or meets another node's half-made
	// asset, is tried again until the start-up window closes. A settings
	// mismatch is not.
	deadline := time.Now().Add(b.cfg.startTimeout)
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := b.ensure(u)
		var fixed *settingsError
		if err == nil || errors.As(err, &fixed) || !time.Now().Add(wait).Before(deadline) {
			if err != nil {
				return err
			}
			break
		}
		b.cfg.log.Warn("JetStream set-up not done; trying again", "attempt", attempt, "error", err)
		select {
		case <-time.After(wait):
		case <-b.ctx.Done():
			return err
		}
		wait = min(2*wait, 2*time.Second)
	}

	sub, err := b.nc.Subscribe(b.prefix+".w.>", b.onWake)
	if err != nil {
		return fmt.Errorf("jetstream: subscribe to wake-ups: %w", err)
	}
	_ = sub.SetPendingLimits(1<<20, 64<<20)
	ctx, cancel := context.WithTimeout(b.ctx, 4*b.cfg.timeout)
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("jetstream: subscribe to wake-ups: %w", mapError("flush", err))
	}
	b.wakeSub = sub
	return nil
}

// settingsError is a configuration no retry changes: a stream whose
// settings differ from the node's, a server without JetStream.
type settingsError struct{ msg string }

func (e *settingsError) Error() string { return e.msg }

// ensure finds or makes the streams and buckets, each step bounded by
// four calls' time.
func (b *Broker) ensure(u storeURL) error {
	js := b.js
	ctx, cancel := context.WithTimeout(b.ctx, 4*b.cfg.timeout)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		err = fmt.Errorf("jetstream: JetStream is not available on %s: %w", u.Redacted(), mapError("account info", err))
		if errors.Is(err, natsjs.ErrJetStreamNotEnabled) || errors.Is(err, natsjs.ErrJetStreamNotEnabledForAccount) {
			return &settingsError{err.Error()} // the server's configuration, which no retry changes
		}
		return err
	}

	want := b.streamConfig(u.Replicas)
	st, err := js.Stream(ctx, b.name)
	switch {
	case errors.Is(err, natsjs.ErrStreamNotFound):
		if want.Replicas == 0 {
			want.Replicas = b.defaultReplicas()
		}
		if st, err = js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("jetstream: create stream %s: %w", b.name, mapError("create stream", err))
		}
	case err != nil:
		return fmt.Errorf("jetstream: stream %s: %w", b.name, mapError("stream info", err))
	default:
		have := st.CachedInfo().Config
		if want.Replicas == 0 {
			want.Replicas = have.Replicas
		}
		if diff := streamDiff(have, want); diff != "" {
			if !b.cfg.updateStream {
				return &settingsError{fmt.Sprintf("jetstream: stream %s differs from this node's settings (%s); start with --nats-update-stream (WithUpdateStream) to change it, or use the stream's settings", b.name, diff)}
			}
			b.cfg.log.Warn("updating the stream to this node's settings", "stream", b.name, "changes", diff)
			if st, err = js.UpdateStream(ctx, want); err != nil {
				return fmt.Errorf("jetstream: update stream %s: %w", b.name, mapError("update stream", err))
			}
		}
	}
	b.stream = st

	idCfg := natsjs.StreamConfig{
		Name:              b.name + "_IDS",
		Description:       "longpoll idempotency ids of stream " + b.name,
		Subjects:          []string{b.prefix + ".i.>"},
		MaxMsgsPerSubject: 1,
		MaxAge:            b.cfg.maxAge,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		Discard:           natsjs.DiscardOld,
		Storage:           natsjs.FileStorage,
		Replicas:          want.Replicas,
		Duplicates:        min(2*time.Minute, b.cfg.maxAge),
	}
	if b.ids, err = js.CreateOrUpdateStream(ctx, idCfg); err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", idCfg.Name, mapError("create stream", err))
	}
	if b.revocations, err = js.CreateOrUpdateKeyValue(ctx, natsjs.KeyValueConfig{
		Bucket:      b.name + "_REVOKED",
		Description: "longpoll revocations of stream " + b.name,
		Storage:     natsjs.FileStorage,
		Replicas:    want.Replicas,
	}); err != nil {
		return fmt.Errorf("jetstream: bucket %s_REVOKED: %w", b.name, mapError("create bucket", err))
	}
	if b.nodes, err = js.CreateOrUpdateKeyValue(ctx, natsjs.KeyValueConfig{
		Bucket:      b.name + "_NODES",
		Description: "longpoll node heartbeats of stream " + b.name,
		TTL:         NodesTTL,
		Storage:     natsjs.FileStorage,
		Replicas:    want.Replicas,
	}); err != nil {
		return fmt.Errorf("jetstream: bucket %s_NODES: %w", b.name, mapError("create bucket", err))
	}
	return nil
}

// NodesTTL is the age at which the nodes' bucket drops a heartbeat even
// if its own ttl is longer.
const NodesTTL = 24 * time.Hour

func (b *Broker) streamConfig(replicas int) natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:              b.name,
		Description:       b.limitsDescription(),
		Subjects:          []string{b.prefix + ".t.>"},
		Retention:         natsjs.LimitsPolicy,
		MaxMsgsPerSubject: int64(b.cfg.maxMessages),
		MaxAge:            b.cfg.maxAge,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		Discard:           natsjs.DiscardOld,
		Storage:           natsjs.FileStorage,
		Replicas:          replicas,
		Duplicates:        min(2*time.Minute, b.cfg.maxAge),
	}
}

// limitsDescription records the retention limits that JetStream does not
// keep itself (bytes per topic) beside those it does, so that nodes with
// other settings notice at start.
func (b *Broker) limitsDescription() string {
	return fmt.Sprintf("longpoll topic logs: max_messages=%d max_age=%s max_bytes=%d",
		b.cfg.maxMessages, b.cfg.maxAge, b.cfg.maxBytes)
}

// streamDiff describes how have differs from want in what this broker
// relies on; "" if it does not. An operator's own choices (max_bytes of
// the whole stream, discard policy, placement) are left alone.
func streamDiff(have, want natsjs.StreamConfig) string {
	var d []string
	if strings.Join(have.Subjects, ",") != strings.Join(want.Subjects, ",") {
		d = append(d, fmt.Sprintf("subjects %q, want %q", have.Subjects, want.Subjects))
	}
	if have.MaxMsgsPerSubject != want.MaxMsgsPerSubject {
		d = append(d, fmt.Sprintf("max_msgs_per_subject %d, want %d", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject))
	}
	if have.MaxAge != want.MaxAge {
		d = append(d, fmt.Sprintf("max_age %v, want %v", have.MaxAge, want.MaxAge))
	}
	if have.Retention != want.Retention {
		d = append(d, fmt.Sprintf("retention %v, want %v", have.Retention, want.Retention))
	}
	if have.Replicas != want.Replicas {
		d = append(d, fmt.Sprintf("replicas %d, want %d", have.Replicas, want.Replicas))
	}
	if len(d) == 0 && have.Description != want.Description {
		// The limits JetStream does not keep (bytes per topic) differ.
		d = append(d, fmt.Sprintf("description %q, want %q", have.Description, want.Description))
	}
	return strings.Join(d, "; ")
}

// defaultReplicas is 3 on a cluster of three servers or more, else 1.
func (b *Broker) defaultReplicas() int {
	if b.nc.ConnectedClusterName() != "" && len(b.nc.Servers()) >= 3 {
		return 3
	}
	return 1
}

// versionAtLeast compares dotted versions ("2.9.10", "2.11.0-RC.1").
func versionAtLeast(have, want string) bool {
	parse := func(s string) [3]int {
		s, _, _ = strings.Cut(strings.TrimPrefix(s, "v"), "-")
		var v [3]int
		for i, p := range strings.SplitN(s, ".", 3) {
			v[i], _ = strconv.Atoi(p)
		}
		return v
	}
	h, w := parse(have), parse(want)
	for i := range h {
		if h[i] != w[i] {
			return h[i] > w[i]
		}
	}
	return true
}

// String describes the broker for logs, without the password.
func (b *Broker) String() string { return b.desc }

func (b *Broker) topicSubject(topic string) string { return b.prefix + ".t." + EncodeTopic(topic) }
func (b *Broker) wakeSubject(topic string) string  { return b.prefix + ".w." + EncodeTopic(topic) }

// idSubject is the index subject of (topic, id): the id is hashed, so
// that any id makes one short token.
func (b *Broker) idSubject(topic, id string) string {
	sum := sha256.Sum256([]byte(id))
	return b.prefix + ".i." + EncodeTopic(topic) + "." + hex.EncodeToString(sum[:16])
}

// call runs fn with the broker's timeout and maps its error: the caller's
// own cancellation as is, a full store to ErrStoreFull, anything that
// means "NATS cannot serve now" to ErrUnavailable.
func (b *Broker) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return longpoll.ErrClosed
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	err := fn(cctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if b.closed.Load() {
		return longpoll.ErrClosed
	}
	return mapError(op, err)
}

func mapError(op string, err error) error {
	if errors.Is(err, protocol.ErrUnavailable) || errors.Is(err, protocol.ErrStoreFull) || errors.Is(err, longpoll.ErrPartialAppend) {
		return err
	}
	if isFull(err) {
		return fmt.Errorf("jetstream: %s: %w: %w", op, protocol.ErrStoreFull, err)
	}
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		switch {
		case apiErr.Code == 503, apiErr.ErrorCode == 10118,
			apiErr.ErrorCode == natsjs.JSErrCodeStreamNotFound: // deleted under the nodes; a node's start makes it again
			return fmt.Errorf("jetstream: %s: %w: %w", op, protocol.ErrUnavailable, err)
		}
		// A reply JetStream should not give here: a bug or a
		// misconfiguration, not an outage.
		return fmt.Errorf("jetstream: %s: %w", op, err)
	}
	if errors.Is(err, errRecord) {
		return fmt.Errorf("jetstream: %s: %w", op, err)
	}
	return fmt.Errorf("jetstream: %s: %w: %w", op, protocol.ErrUnavailable, err)
}

// isFull reports whether err says the stream, the account or the
// server has no room: limits of the account (resources exceeded), of the
// server (insufficient resources), of a stream capped with discard new
// (maximum bytes or messages exceeded), or a record over the maximum
// message size.
func isFull(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) {
		return true
	}
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	desc := strings.ToLower(apiErr.Description)
	switch apiErr.ErrorCode {
	case 10002, 10023, 10028, 10047, 10054:
		return true
	}
	return strings.Contains(desc, "maximum bytes exceeded") || strings.Contains(desc, "maximum messages exceeded") ||
		strings.Contains(desc, "insufficient") || strings.Contains(desc, "resource limits exceeded")
}

func isWrongLast(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant)
}

// retryable reports whether an append's publish may be tried again in the
// same call: the server did not answer, or its stream had no leader.
func retryable(err error) bool {
	if isFull(err) {
		return false
	}
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503
	}
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, natsjs.ErrNoStreamResponse)
}

func (b *Broker) acquireTopic(topic string) *topicLock {
	b.mu.Lock()
	defer b.mu.Unlock()
	tl := b.topics[topic]
	if tl == nil {
		tl = &topicLock{sem: make(chan struct{}, 1)}
		b.topics[topic] = tl
	}
	tl.refs++
	return tl
}

func (b *Broker) releaseTopic(topic string, tl *topicLock) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tl.refs--
	if tl.refs == 0 && len(b.topics) > maxCachedTopics {
		delete(b.topics, topic)
	}
}

// part is one topic's publications of a batch.
type part struct {
	topic string
	idx   []int // indexes into the batch, in order
}

// Append appends pubs as described by longpoll.Broker. Each topic's part
// of the batch is one record, so it is all or nothing; a batch spanning
// topics is appended topic by topic, and a failure after the first topic
// leaves it appended in part (an error matching longpoll.ErrPartialAppend;
// see the package doc).
func (b *Broker) Append(ctx context.Context, pubs []longpoll.Publication) ([]longpoll.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, longpoll.ErrClosed
	}
	if len(pubs) == 0 {
		return nil, nil
	}
	var parts []*part
	byTopic := map[string]*part{}
	for i := range pubs {
		p := byTopic[pubs[i].Topic]
		if p == nil {
			p = &part{topic: pubs[i].Topic}
			byTopic[p.topic] = p
			parts = append(parts, p)
		}
		p.idx = append(p.idx, i)
	}
	receipts := make([]longpoll.Receipt, len(pubs))
	done := 0
	err := b.call(ctx, "append", func(ctx context.Context) error {
		for _, p := range parts {
			if err := b.appendPart(ctx, p, pubs, receipts); err != nil {
				return err
			}
			done++
		}
		return nil
	})
	for _, p := range parts[:done] {
		b.wake(p.topic)
	}
	if err != nil {
		if done > 0 {
			b.cfg.log.Error("a batch spanning topics was appended in part", "topics", len(parts), "appended", done, "error", err)
			return nil, fmt.Errorf("jetstream: append: %d of the batch's %d topics were appended (%w): %w", done, len(parts), longpoll.ErrPartialAppend, err)
		}
		return nil, err
	}
	return receipts, nil
}

// wake tells every node's watchers of topic, this node's directly.
func (b *Broker) wake(topic string) {
	b.w.wakeTopic(topic)
	_ = b.nc.Publish(b.wakeSubject(topic), nil)
}

// appendPart appends one topic's part of a batch. Appends to one topic
// on this node are committed one group at a time: an append queues its
// part, and whichever append holds the topic's semaphore commits every
// part queued by then (within groupMessages and groupBytes) as one record,
// so a hot topic costs one publish per group rather than per append, and
// this node's appends never race each other for the subject's sequence.
func (b *Broker) appendPart(ctx context.Context, p *part, pubs []longpoll.Publication, receipts []longpoll.Receipt) error {
	tl := b.acquireTopic(p.topic)
	defer b.releaseTopic(p.topic, tl)
	req := &request{done: make(chan struct{})}
	for _, i := range p.idx {
		req.pubs = append(req.pubs, pubs[i])
	}
	tl.qmu.Lock()
	tl.queue = append(tl.queue, req)
	tl.qmu.Unlock()
	for {
		select {
		case <-req.done:
		case tl.sem <- struct{}{}:
			select {
			case <-req.done:
			default:
				b.commitQueue(ctx, p.topic, tl)
			}
			<-tl.sem
			continue
		case <-ctx.Done():
			tl.qmu.Lock()
			taken := req.taken
			if !taken {
				tl.queue = slices.DeleteFunc(tl.queue, func(r *request) bool { return r == req })
			}
			tl.qmu.Unlock()
			if !taken {
				return ctx.Err()
			}
			<-req.done // a commit has it: its outcome is this append's
		}
		if req.err != nil {
			return req.err
		}
		copyReceipts(receipts, p, req.receipts)
		return nil
	}
}

// commitQueue commits the head of tl's queue as one record, with the
// caller holding tl.sem, and tells each request taken its outcome. The
// commit is not cancelled with the committing append's own context: it
// carries other appends.
func (b *Broker) commitQueue(ctx context.Context, topic string, tl *topicLock) {
	tl.qmu.Lock()
	var group []*request
	n, size := 0, 0
	for _, r := range tl.queue {
		rn, rs := len(r.pubs), 0
		for _, p := range r.pubs {
			rs += len(p.Data) + len(p.ID)
		}
		if len(group) > 0 && (n+rn > groupMessages || size+rs > groupBytes) {
			break
		}
		r.taken = true
		group = append(group, r)
		n, size = n+rn, size+rs
	}
	tl.queue = tl.queue[len(group):]
	tl.qmu.Unlock()
	if len(group) == 0 {
		return
	}
	all := make([]longpoll.Publication, 0, n)
	for _, r := range group {
		all = append(all, r.pubs...)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.timeout)
	defer cancel()
	rs, err := b.commit(cctx, topic, tl, all, newToken())
	for _, r := range group {
		if err != nil {
			r.err = err
		} else {
			r.receipts, rs = rs[:len(r.pubs)], rs[len(r.pubs):]
		}
		close(r.done)
	}
}

// commit appends pubs, all of topic, as one record, with the caller
// holding tl.sem, retrying when another node took the subject's next
// sequence first, or when the server did not answer: token (the
// Nats-Msg-Id of every attempt, and with the attempt's number in its
// Lp-Token header) tells an attempt that was stored after all.
func (b *Broker) commit(ctx context.Context, topic string, tl *topicLock, pubs []longpoll.Publication, token string) ([]longpoll.Receipt, error) {
	subj := b.topicSubject(topic)
	var attempts [][]longpoll.Receipt
	delay := 10 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cached := tl.valid
		h := tl.head
		if !cached {
			var err error
			if h, err = b.lastRecord(ctx, subj); err != nil {
				return nil, err
			}
			tl.valid, tl.head, tl.indexed = true, h, false
		}
		if h != nil {
			if rs, ok := ours(h, token, attempts); ok {
				return rs, nil
			}
		}
		now := b.cfg.now().UTC().Truncate(time.Microsecond)
		rec := record{epoch: newEpoch(), first: 1, time: now, token: token + "/" + strconv.Itoa(len(attempts))}
		var v view
		if h != nil {
			v = b.view(topic, h, now)
			rec.epoch, rec.first, rec.prev = h.epoch, h.last()+1, h.streamSeq
			rec.costBefore, rec.dataBefore = v.costEnd, h.dataEnd()
			if h.time.After(now) {
				rec.time = h.time // a topic's times never go back
			}
		}
		var found map[string]uint64
		if h != nil {
			var ids []string
			for _, pub := range pubs {
				if pub.ID != "" {
					ids = append(ids, pub.ID)
				}
			}
			if len(ids) > 0 {
				var err error
				if found, err = b.findIDs(ctx, v, ids); err != nil {
					tl.valid = false
					return nil, err
				}
			}
		}
		rs := make([]longpoll.Receipt, len(pubs))
		seen := map[string]uint64{}
		for j, pub := range pubs {
			if pub.ID != "" {
				s, dup := seen[pub.ID]
				if !dup {
					s, dup = found[pub.ID]
				}
				if dup {
					rs[j] = longpoll.Receipt{Topic: topic, Epoch: rec.epoch, Seq: s, Duplicate: true}
					seen[pub.ID] = s
					continue
				}
			}
			seq := rec.first + uint64(len(rec.msgs))
			rec.msgs = append(rec.msgs, entry{id: pub.ID, data: append([]byte(nil), pub.Data...)})
			rs[j] = longpoll.Receipt{Topic: topic, Epoch: rec.epoch, Seq: seq}
			if pub.ID != "" {
				seen[pub.ID] = seq
			}
		}
		if len(rec.msgs) == 0 {
			if cached {
				tl.valid = false // confirm against the store
				continue
			}
			return rs, nil
		}
		if h != nil && !tl.indexed {
			if err := b.indexIDs(ctx, topic, h); err != nil {
				tl.valid = false
				return nil, err
			}
			tl.indexed = true
		}
		hdr, body := rec.encode()
		attempts = append(attempts, rs)
		ack, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Header: hdr, Data: body},
			natsjs.WithExpectLastSequencePerSubject(rec.prev),
			natsjs.WithMsgID(token),
			natsjs.WithExpectStream(b.name))
		if b.afterPublish != nil {
			err = b.afterPublish(err)
		}
		if err != nil {
			tl.valid = false
			if isWrongLast(err) {
				continue
			}
			if retryable(err) && ctx.Err() == nil {
				t := time.NewTimer(delay)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				delay = min(2*delay, 200*time.Millisecond)
				continue
			}
			return nil, err
		}
		if ack.Duplicate {
			// An earlier attempt of this call was stored after all.
			tl.valid = false
			r, err := b.recordAt(ctx, ack.Sequence, subj)
			if err != nil {
				return nil, err
			}
			if r == nil {
				return nil, fmt.Errorf("the record of an earlier attempt (sequence %d) is gone", ack.Sequence)
			}
			rs, ok := ours(r, token, attempts)
			if !ok {
				return nil, fmt.Errorf("record %d is not this append's", ack.Sequence)
			}
			return rs, nil
		}
		rec.streamSeq = ack.Sequence
		tl.valid, tl.head, tl.indexed = true, &rec, false
		return rs, nil
	}
}

// ours returns the receipts of the attempt of token that wrote r, if one
// did.
func ours(r *record, token string, attempts [][]longpoll.Receipt) ([]longpoll.Receipt, bool) {
	rest, ok := strings.CutPrefix(r.token, token+"/")
	if !ok {
		return nil, false
	}
	k, err := strconv.Atoi(rest)
	if err != nil || k < 0 || k >= len(attempts) {
		return nil, false
	}
	return attempts[k], true
}

func copyReceipts(dst []longpoll.Receipt, p *part, rs []longpoll.Receipt) {
	for j, i := range p.idx {
		dst[i] = rs[j]
	}
}

// view judges which messages of a topic's log a reader may get, given its
// last record, by count, age and bytes, as of now.
type view struct {
	b       *Broker
	topic   string
	head    *record
	costEnd uint64
	now     time.Time
}

func (b *Broker) view(topic string, h *record, now time.Time) view {
	return view{b: b, topic: topic, head: h, costEnd: h.costEnd(topic), now: now}
}

// visible reports whether the message seq, appended at t with costBefore
// the cost of the epoch's messages before it, is still retained.
func (v view) visible(seq uint64, t time.Time, costBefore uint64) bool {
	last := v.head.last()
	switch {
	case seq > last, seq+uint64(v.b.cfg.maxMessages) <= last:
		return false
	case !t.Add(v.b.cfg.maxAge).After(v.now):
		return false
	case seq != last && v.costEnd-costBefore > uint64(v.b.cfg.maxBytes):
		return false
	}
	return true
}

// firstVisible returns the first message of r still retained.
func (v view) firstVisible(r *record) (uint64, bool) {
	cb := r.costBefore
	for k, e := range r.msgs {
		if v.visible(r.first+uint64(k), r.time, cb) {
			return r.first + uint64(k), true
		}
		cb += cost(v.topic, e)
	}
	return 0, false
}

// findIDs looks ids up among the retained messages of the topic of v, and
// returns the seq of each one found: in its last record, then in the
// index, which holds the ids of every earlier record (see indexIDs), with
// up to lookupConcurrency index gets at once.
func (b *Broker) findIDs(ctx context.Context, v view, ids []string) (map[string]uint64, error) {
	h := v.head
	found := map[string]uint64{}
	inHead := map[string]bool{}
	cb := h.costBefore
	for k, e := range h.msgs {
		if e.id != "" {
			inHead[e.id] = true
			if s := h.first + uint64(k); v.visible(s, h.time, cb) {
				found[e.id] = s
			}
		}
		cb += cost(v.topic, e)
	}
	var rest []string
	for _, id := range ids {
		if !inHead[id] {
			rest = append(rest, id)
			inHead[id] = true // looked up once
		}
	}
	seqs := make([]uint64, len(rest))
	errs := make([]error, len(rest))
	sem := make(chan struct{}, lookupConcurrency)
	var wg sync.WaitGroup
	for k, id := range rest {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			seqs[k], errs[k] = b.lookupID(ctx, v, id)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for k, id := range rest {
		if seqs[k] != 0 {
			found[id] = seqs[k]
		}
	}
	return found, nil
}

// lookupConcurrency bounds the index gets of one commit at once.
const lookupConcurrency = 16

// lookupID returns the seq of id's retained message before the topic's
// last record, from the index; 0 if there is none.
func (b *Broker) lookupID(ctx context.Context, v view, id string) (uint64, error) {
	h := v.head
	raw, err := b.ids.GetLastMsgForSubject(ctx, b.idSubject(v.topic, id))
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	ie, err := parseIndexEntry(string(raw.Data))
	if err != nil || ie.id != id || ie.epoch != h.epoch || ie.seq >= h.first || !v.visible(ie.seq, ie.time, ie.costBefore) {
		return 0, nil
	}
	return ie.seq, nil
}

// indexEntry is the value of an id's index subject: "<epoch> <seq>
// <time µs> <cost before> <id>".
type indexEntry struct {
	epoch, seq, costBefore uint64
	time                   time.Time
	id                     string
}

func (ie indexEntry) String() string {
	return fmt.Sprintf("%d %d %d %d %s", ie.epoch, ie.seq, ie.time.UnixMicro(), ie.costBefore, ie.id)
}

func parseIndexEntry(s string) (indexEntry, error) {
	f := strings.SplitN(s, " ", 5)
	if len(f) != 5 {
		return indexEntry{}, errors.New("malformed index entry")
	}
	var ie indexEntry
	var us int64
	var errs [4]error
	ie.epoch, errs[0] = strconv.ParseUint(f[0], 10, 64)
	ie.seq, errs[1] = strconv.ParseUint(f[1], 10, 64)
	us, errs[2] = strconv.ParseInt(f[2], 10, 64)
	ie.costBefore, errs[3] = strconv.ParseUint(f[3], 10, 64)
	if err := errors.Join(errs[:]...); err != nil {
		return indexEntry{}, fmt.Errorf("malformed index entry: %w", err)
	}
	ie.time, ie.id = time.UnixMicro(us).UTC(), f[4]
	return ie, nil
}

// indexIDs puts the ids of r, a topic's last record, in the index. Every
// append does so before it writes a record on top of r, so every record
// but a topic's last has its ids indexed, and findID looks at the last
// one itself.
func (b *Broker) indexIDs(ctx context.Context, topic string, r *record) error {
	var futures []natsjs.PubAckFuture
	cb := r.costBefore
	for k, e := range r.msgs {
		if e.id != "" {
			ie := indexEntry{epoch: r.epoch, seq: r.first + uint64(k), costBefore: cb, time: r.time, id: e.id}
			f, err := b.js.PublishAsync(b.idSubject(topic, e.id), []byte(ie.String()))
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
		cb += cost(topic, e)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// lastRecord returns the last record of subj, or nil if it has none.
func (b *Broker) lastRecord(ctx context.Context, subj string) (*record, error) {
	raw, err := b.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return toRecord(raw)
}

// recordAt returns the record at stream sequence seq if it is one of
// subj's, or nil.
func (b *Broker) recordAt(ctx context.Context, seq uint64, subj string) (*record, error) {
	raw, err := b.stream.GetMsg(ctx, seq)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if raw.Subject != subj {
		return nil, nil
	}
	return toRecord(raw)
}

// nextRecord returns subj's first record at stream sequence seq or
// after, or nil.
func (b *Broker) nextRecord(ctx context.Context, seq uint64, subj string) (*record, error) {
	raw, err := b.stream.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(subj))
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return toRecord(raw)
}

// toRecord decodes a stored record. A record whose headers are sound but
// whose body is not is kept, its messages marked bad (readers get them as
// a GapCorrupt); a record whose headers are damaged cannot be placed in
// its topic's log, and is an error.
func toRecord(raw *natsjs.RawStreamMsg) (*record, error) {
	r, err := decodeRecord(raw.Header, raw.Data)
	if err != nil {
		var count uint64
		var herr error
		if r, count, herr = decodeHeader(raw.Header); herr != nil {
			return nil, fmt.Errorf("subject %s, stream sequence %d: %w", raw.Subject, raw.Sequence, err)
		}
		r.msgs = make([]entry, count)
		for k := range r.msgs {
			r.msgs[k].bad = true
		}
	}
	r.streamSeq = raw.Sequence
	return &r, nil
}

// walkBack is how many records a read walks back from a topic's last
// record, one request each, before it searches the stream instead.
const walkBack = 8

// nearHead is how many messages behind the head a read may start and
// still walk back rather than search.
const nearHead = 64

// bulkRecords is how many records a read fetches one by one before it
// fetches the rest through a consumer.
const bulkRecords = 8

// collect returns the oldest retained seq of the log whose last record is
// v.head (0 if none is retained), and the records, oldest first, that hold
// the messages from max(start, oldest) on, up to limit of them; with
// limit 0, the record that holds the oldest. Records JetStream dropped
// count as not retained.
//
// It walks back from the last record, by each record's Lp-Prev; a log
// longer than walkBack records is searched instead: a binary search over
// stream sequences with "first record of the subject at or after" gets,
// then the records from there are fetched in bulk.
func (b *Broker) collect(ctx context.Context, v view, start uint64, limit int) ([]*record, uint64, error) {
	subj := b.topicSubject(v.topic)
	h := v.head
	if h.prev != 0 && (limit == 0 || h.last()-min(start, h.last()) >= nearHead) {
		// Far from the head, or only the oldest asked for: walking back
		// would be wasted.
		return b.search(ctx, v, subj, start, limit)
	}
	recs := []*record{h}
	r := h
	for {
		fv, ok := v.firstVisible(r)
		if !ok || fv > r.first || r.first <= start || r.prev == 0 {
			break
		}
		if len(recs) >= walkBack {
			return b.search(ctx, v, subj, start, limit)
		}
		p, err := b.recordAt(ctx, r.prev, subj)
		if err != nil {
			return nil, 0, err
		}
		if p == nil || p.epoch != h.epoch {
			break
		}
		recs = append(recs, p)
		r = p
	}
	slices.Reverse(recs)
	for k, r := range recs {
		if fv, ok := v.firstVisible(r); ok {
			if limit == 0 {
				return recs[k : k+1], fv, nil
			}
			return recs[k:], fv, nil
		}
	}
	return nil, 0, nil
}

// search is collect for a log longer than walkBack records.
func (b *Broker) search(ctx context.Context, v view, subj string, start uint64, limit int) ([]*record, uint64, error) {
	h := v.head
	visible := func(r *record) bool { _, ok := v.firstVisible(r); return ok }
	first, err := b.nextRecord(ctx, 1, subj)
	if err != nil {
		return nil, 0, err
	}
	if first == nil || first.epoch != h.epoch || first.streamSeq > h.streamSeq {
		first = h // purged meanwhile: judge by the last record alone
	}
	if !visible(first) {
		if first, err = b.seek(ctx, subj, h, first.streamSeq+1, visible); err != nil {
			return nil, 0, err
		}
	}
	oldest, ok := v.firstVisible(first)
	if !ok {
		return nil, 0, nil
	}
	if limit == 0 {
		return []*record{first}, oldest, nil
	}
	target := max(start, oldest)
	from := first
	if from.last() < target {
		if from, err = b.seek(ctx, subj, h, from.streamSeq+1, func(r *record) bool { return r.last() >= target }); err != nil {
			return nil, 0, err
		}
	}
	recs := []*record{from}
	got := int(from.last() - max(from.first, target) + 1)
	if got < limit && from.streamSeq < h.streamSeq {
		more, err := b.fetch(ctx, subj, from.streamSeq+1, h, limit-got)
		if err != nil {
			return nil, 0, err
		}
		recs = append(recs, more...)
	}
	return recs, oldest, nil
}

// seek returns the first record of h's log at stream sequence lo or after
// for which ok holds, by binary search over stream sequences: ok must
// hold from some record of the log on, and for h.
func (b *Broker) seek(ctx context.Context, subj string, h *record, lo uint64, ok func(*record) bool) (*record, error) {
	best, hi := h, h.streamSeq
	for lo < hi {
		mid := lo + (hi-lo)/2
		r, err := b.nextRecord(ctx, mid, subj)
		if err != nil {
			return nil, err
		}
		switch {
		case r == nil || r.streamSeq >= hi || r.epoch != h.epoch:
			hi = mid // no record of the log in [mid, hi)
		case ok(r):
			best, hi = r, r.streamSeq
		default:
			lo = r.streamSeq + 1
		}
	}
	return best, nil
}

// fetch returns the records of h's log from stream sequence from up to h,
// enough to hold need messages: one by one for a few, through a
// short-lived consumer for more.
func (b *Broker) fetch(ctx context.Context, subj string, from uint64, h *record, need int) ([]*record, error) {
	var recs []*record
	got := 0
	for k := 0; k < bulkRecords; k++ {
		r, err := b.nextRecord(ctx, from, subj)
		if err != nil {
			return nil, err
		}
		if r == nil || r.streamSeq > h.streamSeq || r.epoch != h.epoch {
			return recs, nil
		}
		recs = append(recs, r)
		if got += len(r.msgs); got >= need || r.streamSeq == h.streamSeq {
			return recs, nil
		}
		from = r.streamSeq + 1
	}
	cons, err := b.stream.CreateConsumer(ctx, natsjs.ConsumerConfig{
		FilterSubject:     subj,
		DeliverPolicy:     natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         natsjs.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.timeout)
		defer cancel()
		_ = b.stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	for got < need {
		batch, err := cons.FetchNoWait(min(need-got, 1000))
		if err != nil {
			return nil, err
		}
		n := 0
		for done := false; !done; {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case m, ok := <-batch.Messages():
				if !ok {
					done = true
					break
				}
				n++
				md, err := m.Metadata()
				if err != nil {
					return nil, err
				}
				r, err := toRecord(&natsjs.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: m.Headers(), Data: m.Data()})
				if err != nil {
					return nil, err
				}
				if r.streamSeq > h.streamSeq || r.epoch != h.epoch {
					return recs, nil
				}
				recs = append(recs, r)
				got += len(r.msgs)
				if r.streamSeq == h.streamSeq {
					return recs, nil
				}
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
	}
	return recs, nil
}

// Read returns messages of topic after from, as described by
// longpoll.Broker.
func (b *Broker) Read(ctx context.Context, topic string, from protocol.Position, limit int) (longpoll.Page, error) {
	var page longpoll.Page
	err := b.call(ctx, "read", func(ctx context.Context) error {
		var err error
		page, err = b.read(ctx, topic, from, max(limit, 0))
		return err
	})
	if err != nil {
		return longpoll.Page{}, err
	}
	return page, nil
}

func (b *Broker) read(ctx context.Context, topic string, from protocol.Position, limit int) (longpoll.Page, error) {
	var page longpoll.Page
	h, err := b.lastRecord(ctx, b.topicSubject(topic))
	if err != nil {
		return page, err
	}
	if h == nil {
		if from != (protocol.Position{}) {
			page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapReset}
		}
		return page, nil
	}
	last := h.last()
	start := from.Seq + 1
	reset := false
	switch {
	case from == protocol.Position{}:
	case from.Epoch != h.epoch || from.Seq > last:
		reset, start = true, 1
		page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapReset}
	case from.Seq == last:
		page.Next = from
		return page, nil
	}
	v := b.view(topic, h, b.cfg.now())
	recs, oldest, err := b.collect(ctx, v, start, limit)
	if err != nil {
		return longpoll.Page{}, err
	}
	if oldest == 0 {
		// Nothing is retained: the reader moves to the head.
		if !reset {
			page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapExpired, Missed: last - start + 1}
		}
		page.Next = protocol.Position{Epoch: h.epoch, Seq: last}
		return page, nil
	}
	if !reset && start < oldest {
		page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapExpired, Missed: oldest - start}
	}
	begin := max(start, oldest)
	next := begin - 1 // the position after what the page covers
	// Unreadable messages (bad entries) at the start of the page are a
	// GapCorrupt, unless another gap comes first; after readable ones,
	// they end the page.
	corrupt := page.Gap == nil
pages:
	for _, r := range recs {
		for k, e := range r.msgs {
			s := r.first + uint64(k)
			if s < begin {
				continue
			}
			if len(page.Messages) >= limit {
				break pages
			}
			if e.bad {
				if !corrupt {
					break pages
				}
				if page.Gap == nil {
					page.Gap = &protocol.Gap{Topic: topic, Reason: protocol.GapCorrupt}
				}
				page.Gap.Missed++
				next = s
				continue
			}
			corrupt = false
			page.Messages = append(page.Messages, protocol.Message{
				Topic: topic, Seq: s, Time: r.time, ID: e.id, Data: e.data,
			})
			next = s
		}
	}
	if len(page.Messages) > 0 || page.Gap != nil {
		page.Next = protocol.Position{Epoch: h.epoch, Seq: next}
	} else {
		page.Next = from
	}
	return page, nil
}

// Stat describes topic's log as described by longpoll.Broker.
func (b *Broker) Stat(ctx context.Context, topic string) (longpoll.TopicStat, error) {
	var ts longpoll.TopicStat
	err := b.call(ctx, "stat", func(ctx context.Context) error {
		h, err := b.lastRecord(ctx, b.topicSubject(topic))
		if err != nil || h == nil {
			return err
		}
		_, oldest, err := b.collect(ctx, b.view(topic, h, b.cfg.now()), 1, 0)
		ts = longpoll.TopicStat{Epoch: h.epoch, Head: h.last(), Oldest: oldest}
		return err
	})
	if err != nil {
		return longpoll.TopicStat{}, err
	}
	return ts, nil
}

// Watch calls wake(topic) after every append to topic by any node until
// stop is called; see longpoll.Broker and the package doc.
func (b *Broker) Watch(topic string, wake func(topic string)) (stop func()) {
	if b.closed.Load() {
		return func() {}
	}
	return b.w.watch(topic, wake)
}

// Ping reports whether NATS answers and the topics' stream has a leader;
// an error wraps protocol.ErrUnavailable.
func (b *Broker) Ping(ctx context.Context) error {
	return b.call(ctx, "ping", func(ctx context.Context) error {
		if !b.nc.IsConnected() {
			return errors.New("not connected")
		}
		_, err := b.stream.Info(ctx)
		return err
	})
}

// Close stops the revocation watchers, waits for them, and closes the
// connection. Every call after the first, to any method, returns
// longpoll.ErrClosed.
func (b *Broker) Close() error {
	err := longpoll.ErrClosed
	b.closeOnce.Do(func() {
		b.mu.Lock() // orders it with WatchRevocations' wg.Add
		b.closed.Store(true)
		b.mu.Unlock()
		b.cancel()
		b.wg.Wait()
		b.nc.Close()
		b.w.close()
		err = nil
	})
	return err
}

func newEpoch() uint64 {
	for {
		if e := mrand.Uint64(); e != 0 {
			return e
		}
	}
}

func newToken() string {
	var t [12]byte
	_, _ = rand.Read(t[:])
	return hex.EncodeToString(t[:])
}
