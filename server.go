package longpoll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/internal/wheel"

	"github.com/longpoll/longpoll/protocol"

	"github.com/longpoll/longpoll/internal/hub"
	"github.com/longpoll/longpoll/internal/limit"
	"github.com/longpoll/longpoll/internal/sysx"
	"github.com/longpoll/longpoll/internal/transport"
)

// Server is the long-polling server: an http.Handler that serves protocol
// v1 (docs/protocol.md) over a Broker, plus Publish for Go code.
type Server struct {
	broker Broker
	hub    *hub.Hub
	wheel  wheel.Wheel[*parked] // deadlines of parked polls
	fanout gate                 // held while a large fan-out is written
	limit  *limit.Limiter
	budget *transport.Budget          // reply bytes not yet taken by clients
	cfg    config                     // the settings New was given; cfg.liveConfig as at New
	live   atomic.Pointer[liveConfig] // the settings in force that Reconfigure changes
	log    *slog.Logger
	m      Metrics
	ma     abilities // m's optional abilities

	polls    atomic.Int64 // polls in flight
	active   atomic.Int64 // publishes and polls in flight, for Shutdown
	draining atomic.Bool
	done     chan struct{} // closed when shutdown starts
	idle     chan struct{} // closed once draining and nothing is in flight
	drainOne sync.Once
	idleOne  sync.Once

	drained atomic.Bool                   // an admin drain: new polls refused, held ones answered
	revs    revocations                   // the admin disconnects in force
	kick    atomic.Pointer[chan struct{}] // closed by kickHeld
	started time.Time
}

// New returns a Server over b. The caller keeps ownership of b: close it
// after Shutdown.
func New(b Broker, opts ...Option) (*Server, error) {
	if b == nil {
		return nil, errors.New("longpoll: nil broker")
	}
	cfg := config{
		liveConfig: liveConfig{
			defaultTimeout:   DefaultPollTimeout,
			maxTopicsPerPoll: DefaultMaxTopicsPerPoll,
			maxMessageSize:   DefaultMaxMessageSize,
			maxBatch:         DefaultMaxBatch,
			maxBodySize:      DefaultMaxBodySize,
			maxReplyBytes:    DefaultMaxReplyBytes,
			retryAfter:       DefaultRetryAfter,
		},
		logger:         slog.New(slog.DiscardHandler),
		metrics:        nopMetrics{},
		maxHold:        DefaultMaxHold,
		maxReplyMemory: DefaultMaxReplyMemory,
		writeMargin:    DefaultWriteMargin,
		revocationTTL:  DefaultRevocationTTL,
		streamPing:     DefaultStreamPing,
		gzipMin:        DefaultGzipMinSize,
		maxStream:      DefaultMaxStream,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, errors.New("longpoll: " + err.Error())
		}
	}
	if cfg.maxHeldPolls == 0 {
		cfg.maxHeldPolls = DefaultMaxHeldPolls()
	}
	s := &Server{
		broker: b,
		cfg:    cfg,
		log:    cfg.logger,
		m:      cfg.metrics,
		ma:     abilitiesOf(cfg.metrics),
		done:   make(chan struct{}),
		idle:   make(chan struct{}),
		budget: transport.NewBudget(cfg.maxReplyMemory),
	}
	live := cfg.liveConfig
	s.live.Store(&live)
	kick := make(chan struct{})
	s.kick.Store(&kick)
	s.started = time.Now()
	s.hub = hub.New(func(topic string) func() { return b.Watch(topic, s.hub.Wake) })
	s.hub.SetDeliver(s.deliver)
	// Subscribers re-poll straight after each delivery, so a topic all of
	// whose waiters were just answered keeps its broker watch a moment.
	s.hub.SetLinger(time.Second)
	s.wheel.Span = cfg.maxHold
	l := cfg.limits
	s.limit = limit.New(limit.Config{
		PublishRate: l.PublishesPerSecond, PublishBurst: l.PublishBurst,
		PollRate: l.PollsPerSecond, PollBurst: l.PollBurst, MaxHeld: l.MaxHeldPolls,
	}, nil)
	s.followRevocations()
	return s, nil
}

// ReplyBytesPending returns the bytes of poll replies the server holds
// that clients have not taken yet (WithMaxReplyMemory).
func (s *Server) ReplyBytesPending() int64 { return s.budget.Used() }

// ReplyBytesUnread returns the bytes of large poll replies written to
// sockets that their clients have not read yet, as the event-loop
// transport counts them: the kernel holds them, not the process.
func (s *Server) ReplyBytesUnread() int64 { return s.budget.Socket() }

// DefaultMaxHeldPolls derives the cap on polls in flight from the
// process's open-file limit, keeping a reserve for the store, listeners
// and other connections.
func DefaultMaxHeldPolls() int {
	n := int(sysx.OpenFiles())
	if n <= 0 {
		return 10000
	}
	reserve := max(n/20, 100)
	return max(n-reserve, 64)
}

// ServeHTTP serves the protocol: /v1/publish, /v1/poll, /v1/topics/{topic},
// /healthz and /readyz. Every other path answers a JSON 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.serve(w, r, nil) }

// serve is ServeHTTP; with a sink (an event-loop transport) a poll that
// must wait is parked and returned instead, and its access-log line is
// written when it ends.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, sink transport.Sink) *parked {
	if sink != nil { // a poll on the event loop waits for a fan-out to be written
		s.fanout.wait()
	}
	rid := requestID(r)
	pw, bare := w.(*transport.Response)
	if bare {
		pw.RequestID = rid // no header map for it
	} else {
		w.Header().Set("X-Request-Id", rid)
	}
	logged := s.log.Enabled(r.Context(), slog.LevelInfo)
	counted := s.ma.req != nil || s.ma.pub != nil
	route := routeOf(r.URL.Path)
	rw := w
	var (
		rec   *recorder
		start time.Time
	)
	// A poll's time is its hold, which PollEnded records: no clock read.
	if logged || counted && route != RoutePoll {
		start = time.Now()
	}
	// A transport.Response keeps its status and body; net/http's writer
	// does not, so it is wrapped, in a pooled recorder.
	if logged || counted && !bare {
		rec = recorders.Get().(*recorder)
		*rec = recorder{ResponseWriter: w, status: http.StatusOK}
		rw = rec
	}
	p := s.route(rw, r, rid, sink)
	if p != nil { // parked: its reply is counted when it settles
		if rec != nil { // the parked poll kept what it needs of w, not rec
			*rec = recorder{}
			recorders.Put(rec)
		}
		return p
	}
	status, n, answered := http.StatusOK, 0, true
	if rec != nil {
		status, n = rec.status, int(rec.bytes)
		answered = rec.wrote || r.Context().Err() == nil
	} else if bare && pw.Status != 0 {
		status, n = pw.Status, len(pw.Body)
	}
	if logged {
		s.accessLog(rid, &parkLog{method: r.Method, path: r.URL.Path, remote: r.RemoteAddr}, status, int64(n), time.Since(start))
	}
	if counted && answered {
		s.countRequest(route, status, n, start)
	}
	if rec != nil {
		*rec = recorder{}
		recorders.Put(rec)
	}
	return nil
}

// countRequest records an answered request of route that arrived at
// start (zero for a poll).
func (s *Server) countRequest(route Route, status, n int, start time.Time) {
	var took time.Duration
	if !start.IsZero() {
		took = time.Since(start)
	}
	if s.ma.req != nil {
		s.ma.req.RequestServed(route, status, n, took)
	}
	if route == RoutePublish && status < 300 && s.ma.pub != nil {
		s.ma.pub.PublishAcked(took)
	}
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, rid string, sink transport.Sink) *parked {
	p := r.URL.Path
	if s.cfg.admin && strings.HasPrefix(p, "/v1/admin/") { // same-origin only: no CORS
		if to, ok := cleanTarget(r); ok {
			redirectClean(w, to)
			return nil
		}
		s.serveAdmin(w, r, rid, true)
		return nil
	}
	if strings.HasPrefix(p, "/v1/") {
		if s.cors(w, r) {
			return nil
		}
		if to, ok := cleanTarget(r); ok {
			redirectClean(w, to)
			return nil
		}
	}
	var allow string
	switch {
	case p == "/v1/poll":
		allow = "GET, POST"
	case p == "/v1/publish":
		allow = "POST"
	case p == "/v1/stream":
		allow = "GET"
	case strings.HasPrefix(p, "/v1/topics/"):
		allow = "GET, HEAD"
	}
	if allow != "" {
		if !methodIn(allow, r.Method) {
			s.methodNotAllowed(w, rid, allow)
			return nil
		}
		pr, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, rid, s.unauthenticated(r, err))
			return nil
		}
		switch allow {
		case "GET, POST":
			return s.servePoll(w, r, rid, pr, sink)
		case "POST":
			s.servePublish(w, r, rid, pr)
		case "GET":
			return s.serveStream(w, r, rid, pr, sink)
		default:
			s.serveTopic(w, r, rid, pr)
		}
		return nil
	}
	switch {
	case p == "/healthz":
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
	case p == "/readyz":
		s.serveReady(w, r)
	default:
		s.writeError(w, rid, &Error{Code: CodeNotFound, Message: "no such path: " + p})
	}
	return nil
}

// cleanTarget returns where net/http's ServeMux would send r: its escaped
// path cleaned as the mux cleans it (no "." or ".." segments, no repeated
// slashes, a trailing slash kept), with the query. It reports false when
// the path is clean, and for CONNECT, whose path the mux leaves alone.
// The server answers this itself, in JSON, so that a path under /v1/ gets
// the same answer on every transport (docs/protocol.md, "Paths").
func cleanTarget(r *http.Request) (string, bool) {
	if r.Method == http.MethodConnect {
		return "", false
	}
	ep := r.URL.EscapedPath()
	cp := path.Clean(ep) // returns ep itself, with no copy, when it is clean
	if ep[len(ep)-1] == '/' && cp != "/" {
		if len(ep) == len(cp)+1 && strings.HasPrefix(ep, cp) {
			cp = ep
		} else {
			cp += "/"
		}
	}
	if cp == ep {
		return "", false
	}
	if r.URL.RawQuery != "" {
		cp += "?" + r.URL.RawQuery
	}
	return cp, true
}

// redirectClean answers a request for an unclean path as the mux does,
// 307 with the clean path in Location, so that a client that follows it
// repeats its method and body; the body says where, in JSON.
func redirectClean(w http.ResponseWriter, to string) {
	w.Header().Set("Location", to)
	body, _ := json.Marshal(struct {
		Location string `json:"location"`
	}{to})
	writeJSON(w, http.StatusTemporaryRedirect, body)
}

// methodIn reports whether m is one of the comma-separated methods.
func methodIn(allow, m string) bool {
	for a := range strings.SplitSeq(allow, ", ") {
		if a == m {
			return true
		}
	}
	return false
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, rid, allow string) {
	w.Header().Set("Allow", allow)
	s.writeError(w, rid, &Error{Code: CodeMethodNotAllowed, Message: "method not allowed; use " + allow})
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	switch err := s.Ready(ctx); {
	case errors.Is(err, errDraining):
		writeJSON(w, http.StatusServiceUnavailable, []byte(`{"status":"unavailable","reason":"shutting down"}`))
	case err != nil:
		body, _ := json.Marshal(map[string]string{"status": "unavailable", "reason": err.Error()})
		writeJSON(w, http.StatusServiceUnavailable, body)
	default:
		writeJSON(w, http.StatusOK, []byte(`{"status":"ready"}`))
	}
}

var (
	errDraining = errors.New("shutting down")
	errDrained  = errors.New("draining")
)

// Ready returns nil when the server would answer /readyz 200: it is not
// shutting down and its broker, if it is a Pinger, answers a ping within
// ctx. Otherwise it returns why not.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errDraining
	}
	if s.drained.Load() {
		return errDrained
	}
	if p, ok := s.broker.(Pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("broker unreachable: %w", err)
		}
	}
	return nil
}

// Draining reports whether the server is draining: it has begun to shut
// down (it refuses new polls and publishes), or an admin drain is on (it
// refuses new polls; SetDraining).
func (s *Server) Draining() bool { return s.draining.Load() || s.drained.Load() }

// TopicsWaited returns the number of topics with at least one poll
// waiting on this server now.
func (s *Server) TopicsWaited() int { return s.hub.Topics() }

func (s *Server) serveTopic(w http.ResponseWriter, r *http.Request, rid string, pr *Principal) {
	// The name may hold '/', sent as %2F: take it from the escaped path.
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/v1/topics/")
	topic, err := url.PathUnescape(raw)
	if err != nil {
		s.writeError(w, rid, &Error{Code: CodeInvalidTopic, Message: "topic name is not a valid escaped path segment"})
		return
	}
	if err := ValidateTopic(topic); err != nil {
		s.writeError(w, rid, err)
		return
	}
	if !canSubscribe(pr, topic) {
		s.writeError(w, rid, forbidden(topic))
		return
	}
	st, err := s.broker.Stat(context.WithoutCancel(r.Context()), topic) // a half-closed client still reads
	if err != nil {
		s.brokerError(w, r, rid, "stat", err)
		return
	}
	buf := make([]byte, 0, 64+len(topic))
	buf = append(buf, `{"topic":"`...)
	buf = append(buf, topic...)
	buf = append(buf, `","head":`...)
	buf = strconv.AppendUint(buf, st.Head, 10)
	buf = append(buf, `,"oldest":`...)
	buf = strconv.AppendUint(buf, st.Oldest, 10)
	buf = append(buf, `,"waiting":`...)
	buf = strconv.AppendInt(buf, int64(s.hub.Waiting(topic)), 10)
	buf = append(buf, '}')
	writeJSON(w, http.StatusOK, buf)
}

// enter counts a publish or poll in flight; it reports false, having
// counted nothing, once shutdown has begun.
func (s *Server) enter() bool {
	s.active.Add(1)
	if s.draining.Load() {
		s.leave()
		return false
	}
	return true
}

func (s *Server) leave() {
	if s.active.Add(-1) == 0 && s.draining.Load() {
		s.idleOne.Do(func() { close(s.idle) })
	}
}

// Shutdown stops the server gracefully: readiness turns 503, new polls and
// publishes are refused with 503 and a Retry-After, every held poll is
// answered at once with its cursor and a spread retry_after_ms, and
// Shutdown waits for publishes and polls in flight to finish or for ctx.
// It does not close the broker.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drainOne.Do(func() {
		s.draining.Store(true)
		if s.revs.stop != nil {
			s.revs.stop()
		}
		close(s.done)
		s.shutdownParked()
	})
	if s.active.Load() == 0 {
		s.idleOne.Do(func() { close(s.idle) })
	}
	select {
	case <-s.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Waiting returns the number of polls held on topic on this server now.
func (s *Server) Waiting(topic string) int { return s.hub.Waiting(topic) }

// retryable codes always carry Retry-After.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// spread returns base scaled by a random factor in [0.5, 1.5), so refused
// clients do not all come back in step.
func spread(base time.Duration) time.Duration {
	return base/2 + rand.N(base)
}

// writeError answers with err as a protocol error. An err that is not an
// *Error is an internal error.
func (s *Server) writeError(w http.ResponseWriter, rid string, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeInternal, Message: "internal error"}
	}
	if s.ma.refused != nil {
		if why, ok := refusalOf(e.Code); ok {
			s.ma.refused.Refused(why)
		}
	}
	status, ok := protocol.Status(e.Code)
	if !ok {
		status = http.StatusInternalServerError
	}
	var body protocol.ErrorReply
	body.Error.Code = e.Code
	body.Error.Message = e.Message
	body.Error.RequestID = rid
	if retryable(status) {
		base := e.RetryAfter
		if base <= 0 {
			base = s.live.Load().retryAfter
		}
		d := spread(base)
		body.Error.RetryAfterMS = d.Milliseconds()
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	switch {
	case e.Code == CodeTokenRevoked:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="longpoll"`)
	}
	b, _ := json.Marshal(&body)
	writeJSON(w, status, b)
}

// brokerError answers a failed broker call: the broker's own coded error
// when it has one, else 503 broker_unavailable.
func (s *Server) brokerError(w http.ResponseWriter, r *http.Request, rid, op string, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client is gone; nobody reads the answer
	}
	s.m.BrokerError(op)
	var e *Error
	if !errors.As(err, &e) {
		s.log.LogAttrs(r.Context(), slog.LevelError, "broker error",
			slog.String("request_id", rid), slog.String("op", op), slog.String("error", err.Error()))
		e = &Error{Code: CodeUnavailable, Message: "broker unavailable", RetryAfter: ErrUnavailable.RetryAfter}
	}
	s.writeError(w, rid, e)
}

// varyAcceptEncoding is every JSON reply's Vary, shared: its capacity is
// its length, so a header's Add copies it rather than write into it.
var varyAcceptEncoding = []string{"Accept-Encoding"}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	if pw, ok := w.(*transport.Response); ok && pw.Fields() == nil {
		pw.SetJSON(status, body) // no header map
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	if _, ok := h["Vary"]; ok { // Vary: Origin of a CORS reply stays
		h.Add("Vary", "Accept-Encoding")
	} else {
		h["Vary"] = varyAcceptEncoding
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// requestID returns the client's X-Request-Id when it is sane, else a new
// random one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		ok := true
		for i := 0; i < len(id); i++ {
			if id[i] <= ' ' || id[i] > '~' || id[i] == '"' || id[i] == '\\' {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	var b [16]byte
	const hexd = "0123456789abcdef"
	v := rand.Uint64()
	for i := range b {
		b[i] = hexd[v&15]
		v >>= 4
	}
	return string(b[:])
}

// recorder notes the status and size of a reply for the access log and
// the metrics.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
