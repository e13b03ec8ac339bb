package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/internal/eventloop"
	"github.com/longpoll/longpoll/internal/headtime"
	"github.com/longpoll/longpoll/internal/stats"
	"github.com/longpoll/longpoll/internal/sysx"
	"github.com/longpoll/longpoll/prommetrics"
	"github.com/longpoll/longpoll/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveConfig is every setting of longpoll serve.
type serveConfig struct {
	addr             string
	store            string
	storeConfig      storeConfig
	pollTimeout      time.Duration
	maxHold          time.Duration
	maxHeldPolls     int
	maxTopicsPerPoll int
	maxMessageSize   int
	maxBatch         int
	maxBodySize      int64
	maxReplyBytes    int
	maxReplyMemory   int64
	retryAfter       time.Duration
	shutdownGrace    time.Duration
	readHeaderTime   time.Duration
	logFormat        string
	logLevel         string
	tlsCert, tlsKey  string
	auth             authConfig
	demo, dashboard  bool
	statsInterval    time.Duration
	transport        string
	pprof            bool
	revocationTTL    time.Duration
	drainDelay       time.Duration
	streamPing       time.Duration
	maxStream        time.Duration
	gzipMinSize      int

	// Set by runServe: the layers the settings came from, read again at
	// SIGHUP (nil when serve is not started by runServe), and the level
	// of the logger newLogger made, which SIGHUP changes.
	settings *serveSettings
	level    *slog.LevelVar
}

func serveFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.addr, "addr", "localhost:8080", "address to listen on, host:port")
	fs.StringVar(&c.store, "store", defaultStore, "where messages are kept: "+storeKinds)
	storeFlags(fs, &c.storeConfig)
	fs.DurationVar(&c.pollTimeout, "poll-timeout", longpoll.DefaultPollTimeout, "hold of a poll that names no timeout")
	fs.DurationVar(&c.maxHold, "max-hold", longpoll.DefaultMaxHold, "longest hold of a poll; keep it under every proxy's idle limit")
	fs.IntVar(&c.maxHeldPolls, "max-held-polls", 0, "polls in flight at once, beyond which polls get 503 overloaded (0: from the open-file limit)")
	fs.IntVar(&c.maxTopicsPerPoll, "max-topics-per-poll", longpoll.DefaultMaxTopicsPerPoll, "distinct topics one poll may name")
	fs.IntVar(&c.maxMessageSize, "max-message-size", longpoll.DefaultMaxMessageSize, "largest message data, in bytes of JSON")
	fs.IntVar(&c.maxBatch, "max-batch", longpoll.DefaultMaxBatch, "most messages in one publish")
	fs.Int64Var(&c.maxBodySize, "max-body-size", longpoll.DefaultMaxBodySize, "largest request body, in bytes")
	fs.IntVar(&c.maxReplyBytes, "max-reply-bytes", longpoll.DefaultMaxReplyBytes, "largest poll reply body, in bytes; a reply stops before the message that would pass it (one message always goes)")
	fs.Int64Var(&c.maxReplyMemory, "max-reply-memory", longpoll.DefaultMaxReplyMemory, "bytes of poll replies held for clients that have not read them yet; beyond: 503 overloaded")
	fs.DurationVar(&c.retryAfter, "retry-after", longpoll.DefaultRetryAfter, "base delay advised to refused clients (spread 0.5x-1.5x)")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 10*time.Second, "longest wait for requests in flight at shutdown")
	fs.DurationVar(&c.readHeaderTime, "read-header-timeout", 10*time.Second, "time a client has to send its request headers (slow senders are cut)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key serves HTTPS and h2")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	authFlags(fs, &c.auth)
	fs.BoolVar(&c.demo, "demo", true, "serve the demo chat page at /")
	fs.BoolVar(&c.dashboard, "dashboard", true, "serve the live dashboard at /dashboard (admin grant required under --auth jwt)")
	fs.StringVar(&c.transport, "transport", defaultTransport(), "how connections are served: dense (an event loop; Linux, cleartext) or std (net/http)")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go profiles at /debug/pprof/ (admin grant required under --auth jwt; on --admin-addr when set)")
	fs.DurationVar(&c.statsInterval, "stats-interval", stats.DefaultInterval, "how often the server publishes its stats to "+stats.Topic+" (0: never)")
	fs.DurationVar(&c.revocationTTL, "revocation-ttl", longpoll.DefaultRevocationTTL, "how long an admin disconnect refuses its subject's older tokens: the longest token life it honours")
	fs.DurationVar(&c.streamPing, "stream-ping", longpoll.DefaultStreamPing, "how often an idle /v1/stream sends a comment line, so proxies do not time it out")
	fs.DurationVar(&c.maxStream, "max-stream", longpoll.DefaultMaxStream, "longest life of a /v1/stream (less up to 1/16 at random); clients reconnect from their last event")
	fs.IntVar(&c.gzipMinSize, "gzip-min-size", longpoll.DefaultGzipMinSize, "smallest poll reply, batch receipt or topic listing, in bytes, sent gzip-compressed to clients that accept it")
	fs.DurationVar(&c.drainDelay, "drain-delay", 0, "at SIGTERM, drain this long (readiness 503, new polls refused, held polls answered) before shutting down")
}

func (c *serveConfig) check() error {
	var errs []string
	pos := func(name string, ok bool) {
		if !ok {
			errs = append(errs, "--"+name+" must be positive")
		}
	}
	pos("poll-timeout", c.pollTimeout > 0)
	pos("max-hold", c.maxHold > 0)
	pos("max-topics-per-poll", c.maxTopicsPerPoll > 0)
	pos("max-message-size", c.maxMessageSize > 0)
	pos("max-batch", c.maxBatch > 0)
	pos("max-body-size", c.maxBodySize > 0)
	pos("max-reply-bytes", c.maxReplyBytes > 0)
	pos("max-reply-memory", c.maxReplyMemory > 0)
	pos("retry-after", c.retryAfter > 0)
	pos("shutdown-grace", c.shutdownGrace > 0)
	pos("revocation-ttl", c.revocationTTL > 0)
	pos("stream-ping", c.streamPing > 0)
	pos("max-stream", c.maxStream > 0)
	pos("gzip-min-size", c.gzipMinSize > 0)
	if c.drainDelay < 0 {
		errs = append(errs, "--drain-delay must not be negative")
	}
	pos("read-header-timeout", c.readHeaderTime > 0)
	if c.statsInterval < 0 {
		errs = append(errs, "--stats-interval must not be negative")
	}
	if c.maxHeldPolls < 0 {
		errs = append(errs, "--max-held-polls must not be negative")
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, "--log-format must be text or json")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		errs = append(errs, "--log-level must be debug, info, warn or error")
	}
	switch c.transport {
	case "std":
	case "dense":
		if !eventloop.Supported {
			errs = append(errs, "--transport dense needs Linux; use --transport std")
		}
	default:
		errs = append(errs, "--transport must be dense or std")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		errs = append(errs, "--tls-cert and --tls-key go together")
	}
	if err := c.storeConfig.check(c.store); err != nil {
		errs = append(errs, err.Error())
	}
	if err := c.auth.check(c.addr); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// newLogger returns the logger that --log-format and --log-level ask for;
// its level, c.level, may change while it logs.
func newLogger(c *serveConfig, io IO) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.logLevel))
	c.level = new(slog.LevelVar)
	c.level.Set(lvl)
	opts := &slog.HandlerOptions{Level: c.level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(io.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(io.Stderr, opts))
}

func runServe(ctx context.Context, args []string, io IO) int {
	st, pos, code, ok := parseServe("serve", args, nil, io, nil)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(io, "serve", "unexpected argument %q", pos[0])
	}
	if err := st.loadFile(); err != nil {
		return usageError(io, "serve", "%v", err)
	}
	c := st.c
	if err := st.explain(c.check()); err != nil {
		return usageError(io, "serve", "%v", err)
	}
	c.settings = st

	log := newLogger(c, io)
	if st.file != "" {
		log.Info("configuration file", "file", st.file)
	}
	logSettings(log, st)
	if err := serve(ctx, c, log, nil); err != nil {
		log.Error("longpoll serve failed", "error", err)
		return ExitError
	}
	return ExitOK
}

// serve runs the server until ctx is cancelled, then shuts it down
// gracefully. ready, when not nil, receives the listening address.
//
// It goes in four steps: the broker, the server over it, the front end
// that accepts connections for the server, and the run. A step that fails
// returns after the deferred releases of the steps before it.
func serve(ctx context.Context, c *serveConfig, log *slog.Logger, ready chan<- string) error {
	nofile, err := sysx.RaiseOpenFiles()
	if err != nil {
		log.Warn("could not raise the open-file limit", "error", err)
	}
	// Listen first: the default data directory is named after the address
	// actually bound (port 0 picks one).
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.addr, err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	b, err := openBroker(ctx, c, addr, log)
	if err != nil {
		return err
	}
	defer b.close(log)
	s, err := newServer(c, b.b, ln.Addr(), log)
	if err != nil {
		return err
	}
	defer s.close() // before the store closes
	fe, err := newFrontEnd(c, s, log)
	if err != nil {
		return err
	}

	log.Info("longpoll listening",
		"addr", addr, "url", fe.scheme+"://"+addr, "version", Version, "store", b.desc, "transport", fe.transport,
		"poll_timeout", c.pollTimeout, "max_hold", c.maxHold, "max_held_polls", s.maxHeld,
		"max_topics_per_poll", c.maxTopicsPerPoll, "max_message_size", c.maxMessageSize,
		"max_batch", c.maxBatch, "max_body_size", c.maxBodySize, "open_files", nofile,
		"auth", c.auth.mode, "cors_origins", c.auth.corsOrigins.String())
	if ready != nil {
		ready <- addr
	}
	return run(ctx, c, s, fe, ln, log)
}

// servedBroker is the broker under the server, as opened by openBroker.
type servedBroker struct {
	b           longpoll.Broker
	desc        string // for the start-up line
	stopControl func() // the disk store's control socket; nil for the others
}

// openBroker opens the broker that --store names: bolt in a data
// directory (named after addr, the address bound, unless --data-dir
// says), Redis, or memory. The disk store also gets its control socket,
// which longpoll backup reaches while the server runs.
func openBroker(ctx context.Context, c *serveConfig, addr string, log *slog.Logger) (*servedBroker, error) {
	if c.storeConfig.dataDir == "" {
		c.storeConfig.dataDir = dataDirFor(addr)
	}
	b, desc, err := openStore(c.store, &c.storeConfig, log)
	if err != nil {
		return nil, err
	}
	sb := &servedBroker{b: b, desc: desc}
	if bk, ok := b.(backuper); ok && c.store == "disk" {
		sb.stopControl = serveControl(ctx, c.storeConfig.dataDir, bk, log)
	}
	return sb, nil
}

// close stops the control socket, then closes the broker.
func (sb *servedBroker) close(log *slog.Logger) {
	if sb.stopControl != nil {
		sb.stopControl()
	}
	if err := sb.b.Close(); err != nil {
		log.Error("closing the store", "error", err)
	}
}

// apiServer is the protocol server and what is built with it.
type apiServer struct {
	srv     *longpoll.Server
	reg     *prometheus.Registry // the server's metrics and the process's
	pm      *prommetrics.Metrics // the server's metrics, for the routes beside it
	jwt     *auth.JWT            // nil unless --auth jwt; SIGHUP reloads its keys
	maxHeld int                  // --max-held-polls, or its default from the open-file limit
	stats   *stats.Publisher     // nil under --stats-interval 0
}

// newServer builds the protocol server over b from the flags: its
// limits, authentication and Prometheus metrics; and starts the
// publisher of its stats (named after addr), which close stops.
func newServer(c *serveConfig, b longpoll.Broker, addr net.Addr, log *slog.Logger) (*apiServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pm := prommetrics.New(reg)
	bi := buildInfo()
	prommetrics.RegisterBuildInfo(reg, bi.version, bi.commit)
	opts := []longpoll.Option{
		longpoll.WithLogger(log),
		longpoll.WithMetrics(pm),
		longpoll.WithPollTimeout(c.pollTimeout),
		longpoll.WithMaxHold(c.maxHold),
		longpoll.WithMaxTopicsPerPoll(c.maxTopicsPerPoll),
		longpoll.WithMaxMessageSize(c.maxMessageSize),
		longpoll.WithMaxBatch(c.maxBatch),
		longpoll.WithMaxBodySize(c.maxBodySize),
		longpoll.WithMaxReplyBytes(c.maxReplyBytes),
		longpoll.WithMaxReplyMemory(c.maxReplyMemory),
		longpoll.WithRetryAfter(c.retryAfter),
		longpoll.WithRevocationTTL(c.revocationTTL),
		longpoll.WithStreamPing(c.streamPing),
		longpoll.WithMaxStream(c.maxStream),
		longpoll.WithGzipMinSize(c.gzipMinSize),
		longpoll.WithAdminAPI(),
		longpoll.WithNodeInfo(nodeInfo(c, addr)),
	}
	authOpts, jwt, err := c.auth.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, authOpts...)
	if c.auth.mode == "none" && !loopback(c.addr) {
		log.Warn("serving without authentication on a non-loopback address: anyone who can reach it may read and publish every topic", "addr", c.addr)
	}
	maxHeld := c.maxHeldPolls
	if maxHeld == 0 {
		maxHeld = longpoll.DefaultMaxHeldPolls()
	}
	opts = append(opts, longpoll.WithMaxHeldPolls(maxHeld))
	srv, err := longpoll.New(b, opts...)
	if err != nil {
		return nil, err
	}
	prommetrics.RegisterReplyBytes(reg, srv.ReplyBytesPending, srv.ReplyBytesUnread)
	prommetrics.RegisterServer(reg, srv)
	s := &apiServer{srv: srv, reg: reg, pm: pm, jwt: jwt, maxHeld: maxHeld}
	if c.statsInterval > 0 {
		s.stats, err = stats.Start(srv, stats.Config{Gatherer: reg, Interval: c.statsInterval, Broker: b, Logger: log, Node: nodeName(addr)})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// close stops the stats publisher.
func (s *apiServer) close() {
	if s.stats != nil {
		s.stats.Close()
	}
}

// frontEnd is what accepts connections for the server: net/http's
// server, the event loop in front of it under --transport dense, and the
// admin server under --admin-addr.
type frontEnd struct {
	hs        *http.Server
	dt        *eventloop.Transport // nil unless dense serves
	admin     *http.Server         // nil without --admin-addr
	cert      *certFiles           // nil without --tls-cert
	scheme    string               // http or https
	transport string               // dense or std, as served
	stdConns  atomic.Int64         // connections net/http serves
}

// newFrontEnd builds the front end of s from the flags: the routes, the
// HTTP server with its timeouts and protocols, TLS, and the transport.
// The dense transport serves cleartext HTTP/1.1 polls on its event loop
// and hands everything else to net/http; TLS is always net/http's.
func newFrontEnd(c *serveConfig, s *apiServer, log *slog.Logger) (*frontEnd, error) {
	mux, admin := routes(c, s)
	fe := &frontEnd{hs: newHTTPServer(c, apiFirst(s.srv, mux), log), admin: admin, scheme: "http", transport: "std"}
	fe.hs.ConnState = headtime.ConnState(fe.countConn)
	if c.tlsCert != "" {
		fe.cert = &certFiles{cert: c.tlsCert, key: c.tlsKey}
		if err := fe.cert.load(); err != nil {
			return nil, err
		}
		fe.hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: fe.cert.get}
		fe.hs.Protocols.SetHTTP2(true)
		fe.scheme = "https"
	} else {
		fe.hs.Protocols.SetUnencryptedHTTP2(true)
	}
	if c.transport == "dense" && fe.hs.TLSConfig == nil {
		fe.transport = "dense"
		// On the memory store nothing a poll or a publish does waits on
		// I/O, so the loop serves them itself.
		fe.dt = eventloop.New(eventloop.Config{Server: s.srv.Transport(), Std: fe.hs, ReadHeaderTimeout: c.readHeaderTime, IdleTimeout: fe.hs.IdleTimeout,
			Logger: log, Inline: c.store == "memory"})
	}
	var dense func() int
	if cc, ok := any(fe.dt).(interface{ Conns() int }); ok && fe.dt != nil { // Linux only
		dense = cc.Conns
	}
	prommetrics.RegisterConnections(s.reg, dense, func() int { return int(fe.stdConns.Load()) })
	return fe, nil
}

// countConn counts the connections net/http serves, for
// longpoll_connections_open; under the dense transport, those the event
// loop handed over.
func (fe *frontEnd) countConn(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		fe.stdConns.Add(1)
	case http.StateHijacked, http.StateClosed:
		fe.stdConns.Add(-1)
	}
}

// routes returns the main listener's routes (the web pages, and the
// metrics and profiles unless an admin server has them) and, under
// --admin-addr, the admin server. The protocol's own routes go to the
// server first (apiFirst).
func routes(c *serveConfig, s *apiServer) (*http.ServeMux, *http.Server) {
	// Each route beside the server counts its requests as the server
	// counts its own; what the pages hand to the server counts there.
	metrics := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
	profiles := func(guard func(http.Handler) http.Handler) func(http.Handler) http.Handler {
		return func(h http.Handler) http.Handler {
			if guard != nil {
				h = guard(h)
			}
			return s.pm.Handler(longpoll.RouteAdmin, h)
		}
	}
	mux := http.NewServeMux()
	var admin *http.Server
	if c.auth.adminAddr != "" {
		amux := http.NewServeMux()
		amux.Handle("GET /metrics", s.pm.Handler(longpoll.RouteMetrics, metrics))
		if c.pprof {
			mountPprof(amux, profiles(nil))
		}
		amux.Handle("/", s.srv)
		// The admin API there takes no token, as /metrics: the listener
		// is meant for a private interface.
		api, open := apiFirst(s.srv, amux), s.srv.OpenAdminHandler()
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/admin/") {
				open.ServeHTTP(w, r)
				return
			}
			api.ServeHTTP(w, r)
		})
		admin = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	} else {
		mux.Handle("GET /metrics", s.pm.Handler(longpoll.RouteMetrics, s.srv.RequireAdmin(metrics)))
		if c.pprof {
			mountPprof(mux, profiles(s.srv.RequireAdmin))
		}
	}
	mux.Handle("/", s.pm.Handler(longpoll.RouteStatic, web.Handler(web.Options{Demo: c.demo, Dashboard: c.dashboard, Admin: s.srv.RequireAdmin, Next: prommetrics.Pass(s.srv)})))
	return mux, admin
}

// newHTTPServer returns net/http's server of h, speaking HTTP/1.1;
// newFrontEnd adds HTTP/2 over TLS or cleartext.
func newHTTPServer(c *serveConfig, h http.Handler, log *slog.Logger) *http.Server {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.readHeaderTime,
		// Polls extend both deadlines to their hold plus a margin; these
		// bound everything else, slow senders included.
		ReadTimeout:    30 * time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Protocols:      protocols,
		// An HTTP/2 client holds at most this many replies at once on one
		// connection (each bounded by --max-reply-bytes), where HTTP/1.1
		// holds one; net/http's default is 250.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: h2Streams},
		// A kept-alive connection's next head gets --read-header-timeout
		// from its first byte (internal/headtime).
		ConnState: headtime.ConnState(nil),
	}
}

// serve serves ln until the front end is closed or shut down.
func (fe *frontEnd) serve(ln net.Listener) error {
	switch {
	case fe.dt != nil:
		return fe.dt.Serve(ln)
	case fe.hs.TLSConfig != nil:
		return fe.hs.ServeTLS(ln, "", "")
	default:
		return fe.hs.Serve(headtime.Listen(ln, fe.hs.ReadHeaderTimeout))
	}
}

// shutdown stops accepting, waits for the handlers to return and closes
// idle connections, until ctx ends.
func (fe *frontEnd) shutdown(ctx context.Context) error {
	if fe.dt != nil {
		return fe.dt.Shutdown(ctx)
	}
	return fe.hs.Shutdown(ctx)
}

// close closes the listener and every connection at once.
func (fe *frontEnd) close() {
	if fe.dt != nil {
		fe.dt.Close()
		return
	}
	fe.hs.Close()
}

// certFiles is the TLS certificate served, loaded from its files at the
// start and again at each SIGHUP. It is looked up per handshake, so a
// reload takes effect for new connections and drops none.
type certFiles struct {
	cert, key string
	loaded    atomic.Pointer[tls.Certificate]
}

func (f *certFiles) load() error {
	kp, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return fmt.Errorf("loading TLS certificate: %w", err)
	}
	f.loaded.Store(&kp)
	return nil
}

func (f *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.loaded.Load(), nil
}

// run serves ln and the admin address until ctx is cancelled, then shuts
// down gracefully; SIGHUP meanwhile reads the configuration file again
// and applies what can change live (reloadConfig), then reloads the JWT
// keys and the TLS certificate, without dropping a connection. A server that fails ends
// the run with its error, after the other is closed.
func run(ctx context.Context, c *serveConfig, s *apiServer, fe *frontEnd, ln net.Listener, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- fe.serve(ln) }()
	var aerrc chan error // the admin server's; nil (never ready) without one
	if fe.admin != nil {
		aln, err := net.Listen("tcp", c.auth.adminAddr)
		if err != nil {
			fe.close()
			<-errc
			return fmt.Errorf("listening on --admin-addr %s: %w", c.auth.adminAddr, err)
		}
		log.Info("admin listening", "addr", aln.Addr().String())
		aerrc = make(chan error, 1)
		go func() { aerrc <- fe.admin.Serve(aln) }()
		defer func() {
			fe.admin.Close()
			if err := <-aerrc; err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server", "error", err)
			}
		}()
	}

	stopBeat, beaten := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beaten)
		heartbeat(s.srv, stopBeat, log)
	}()
	defer func() {
		close(stopBeat)
		<-beaten
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("serving: %w", err)
		case err := <-aerrc:
			fe.close()
			<-errc
			aerrc <- err // for the deferred close
			return fmt.Errorf("serving --admin-addr: %w", err)
		case <-hup:
			if reloadConfig(c, s.srv, log) {
				reload(s.jwt, fe.cert, log)
			}
		case <-ctx.Done():
			if c.drainDelay > 0 {
				drainFor(c.drainDelay, s.srv, log)
			}
			shutdown(c.shutdownGrace, s.srv, fe, errc, log)
			return nil
		}
	}
}

// reload rereads the JWT keys and the TLS certificate, each where one is
// in use, keeping the old ones when the new fail to load.
func reload(jwt *auth.JWT, cert *certFiles, log *slog.Logger) {
	if jwt != nil {
		if err := jwt.Reload(); err != nil {
			log.Error("reloading JWT keys; keeping the old ones", "error", err)
		} else {
			log.Info("reloaded JWT keys")
		}
	}
	if cert != nil {
		if err := cert.load(); err != nil {
			log.Error("reloading the TLS certificate; keeping the old one", "error", err)
		} else {
			log.Info("reloaded the TLS certificate")
		}
	}
}

// drainFor drains the server for d before it shuts down (--drain-delay):
// readiness turns 503 so load balancers stop sending polls, held polls
// are answered, publishes go on.
func drainFor(d time.Duration, srv *longpoll.Server, log *slog.Logger) {
	log.Info("draining before shutdown", "drain_delay", d)
	srv.SetDraining(true)
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// shutdown ends the run gracefully within grace: the server answers its
// held polls itself, since net/http's Shutdown would not wake them, and
// the front end then waits for the handlers to return and closes idle
// connections. Past grace, every connection is closed. served receives
// the end of fe's serve.
func shutdown(grace time.Duration, srv *longpoll.Server, fe *frontEnd, served <-chan error, log *slog.Logger) {
	log.Info("shutting down", "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- srv.Shutdown(ctx) }()
	err := fe.shutdown(ctx)
	if derr := <-drained; err == nil {
		err = derr
	}
	<-served
	if err != nil {
		fe.close()
		log.Warn("grace period over with requests in flight", "error", err)
	}
	log.Info("stopped")
}

// h2Streams bounds the concurrent streams of an HTTP/2 connection.
const h2Streams = 16

// apiFirst sends every request under /v1/ to api before mux sees it, as
// the dense transport does, so that the mux's path cleaning (a redirect
// with an HTML body) never answers for the protocol: the server answers
// every /v1/ path itself, in JSON, on every transport.
func apiFirst(api, mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			api.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// defaultTransport is dense where the event loop exists.
func defaultTransport() string {
	if eventloop.Supported {
		return "dense"
	}
	return "std"
}

// mountPprof serves the Go profiles under /debug/pprof/, wrapped by guard
// when it is not nil.
func mountPprof(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	if guard == nil {
		guard = func(h http.Handler) http.Handler { return h }
	}
	mux.Handle("/debug/pprof/", guard(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", guard(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", guard(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", guard(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", guard(http.HandlerFunc(pprof.Trace)))
}

// nodeName names this server in its stats snapshots: the host name and
// the port it listens on, so that several nodes on one host stay apart.
func nodeName(addr net.Addr) string {
	host, _ := os.Hostname()
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return host + ":" + strconv.Itoa(tcp.Port)
	}
	return host
}

// nodeInfo describes this node for the admin API and the heartbeats.
func nodeInfo(c *serveConfig, addr net.Addr) longpoll.NodeInfo {
	b := buildInfo()
	return longpoll.NodeInfo{Name: nodeName(addr), Version: b.version, Commit: b.commit, Built: b.built,
		Store: storeKind(c.store), ConfigDigest: configDigest(c)}
}

// storeKind names the kind of store --store names, without its address
// or credentials: memory, disk, redis.
func storeKind(store string) string {
	scheme, _, ok := strings.Cut(store, "://")
	if !ok {
		return store
	}
	if scheme == "rediss" {
		return "redis"
	}
	return scheme
}

// configDigest hashes the effective settings, every key with its value,
// so that nodes configured alike show the same digest; "" when serve was
// not started from its flags.
func configDigest(c *serveConfig) string {
	if c.settings == nil {
		return ""
	}
	h := sha256.New()
	for _, k := range serveKeys() {
		if k == "addr" || k == "data-dir" { // the node's own, not its configuration
			continue
		}
		if f := c.settings.fs.Lookup(k); f != nil {
			fmt.Fprintf(h, "%s=%s\n", k, f.Value.String())
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// heartbeat tells the store every heartbeatEvery that this node lives,
// until stop is closed; a node silent for heartbeatTTL drops out of the
// other nodes' lists.
func heartbeat(srv *longpoll.Server, stop <-chan struct{}, log *slog.Logger) {
	beat := func() {
		ctx, cancel := context.WithTimeout(context.Background(), heartbeatEvery)
		defer cancel()
		if err := srv.Heartbeat(ctx, heartbeatTTL); err != nil {
			log.Debug("heartbeat", "error", err)
		}
	}
	beat()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			beat()
		}
	}
}

const (
	heartbeatEvery = 5 * time.Second
	heartbeatTTL   = 15 * time.Second
)
