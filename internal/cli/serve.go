package cli

import (
	"context"
	"crypto/tls"
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

func newLogger(c *serveConfig, io IO) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.logLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(io.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(io.Stderr, opts))
}

func runServe(ctx context.Context, args []string, io IO) int {
	var c serveConfig
	fs := newFlagSet("serve", "", io)
	serveFlags(fs, &c)
	pos, code, ok := parseArgs(fs, args, nil, io)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(io, "serve", "unexpected argument %q", pos[0])
	}
	if err := c.check(); err != nil {
		return usageError(io, "serve", "%v", err)
	}

	log := newLogger(&c, io)
	if err := serve(ctx, &c, log, nil); err != nil {
		log.Error("longpoll serve failed", "error", err)
		return ExitError
	}
	return ExitOK
}

// serve runs the server until ctx is cancelled, then shuts it down
// gracefully. ready, when not nil, receives the listening address.
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
	if c.storeConfig.dataDir == "" {
		c.storeConfig.dataDir = dataDirFor(addr)
	}
	b, storeDesc, err := openStore(c.store, &c.storeConfig, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := b.Close(); err != nil {
			log.Error("closing the store", "error", err)
		}
	}()
	if bk, ok := b.(backuper); ok && c.store == "disk" {
		stop := serveControl(ctx, c.storeConfig.dataDir, bk, log)
		defer stop()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := []longpoll.Option{
		longpoll.WithLogger(log),
		longpoll.WithMetrics(prommetrics.New(reg)),
		longpoll.WithPollTimeout(c.pollTimeout),
		longpoll.WithMaxHold(c.maxHold),
		longpoll.WithMaxTopicsPerPoll(c.maxTopicsPerPoll),
		longpoll.WithMaxMessageSize(c.maxMessageSize),
		longpoll.WithMaxBatch(c.maxBatch),
		longpoll.WithMaxBodySize(c.maxBodySize),
		longpoll.WithMaxReplyBytes(c.maxReplyBytes),
		longpoll.WithMaxReplyMemory(c.maxReplyMemory),
		longpoll.WithRetryAfter(c.retryAfter),
	}
	authOpts, jwtAuth, err := c.auth.options()
	if err != nil {
		return err
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
		return err
	}
	prommetrics.RegisterReplyBytes(reg, srv.ReplyBytesPending, srv.ReplyBytesUnread)

	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	var admin *http.Server
	if c.auth.adminAddr != "" {
		amux := http.NewServeMux()
		amux.Handle("GET /metrics", metrics)
		if c.pprof {
			mountPprof(amux, nil)
		}
		amux.Handle("/", srv)
		admin = &http.Server{Handler: apiFirst(srv, amux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	} else {
		mux.Handle("GET /metrics", srv.RequireAdmin(metrics))
		if c.pprof {
			mountPprof(mux, srv.RequireAdmin)
		}
	}
	mux.Handle("/", web.Handler(web.Options{Demo: c.demo, Dashboard: c.dashboard, Admin: srv.RequireAdmin, Next: srv}))
	if c.statsInterval > 0 {
		sp, err := stats.Start(srv, stats.Config{Gatherer: reg, Interval: c.statsInterval, Broker: b, Logger: log, Node: nodeName(ln.Addr())})
		if err != nil {
			return err
		}
		defer sp.Close() // before the store closes
	}

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	hs := &http.Server{
		Handler:           apiFirst(srv, mux),
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
	scheme := "http"
	var cert atomic.Pointer[tls.Certificate]
	loadCert := func() error {
		kp, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return fmt.Errorf("loading TLS certificate: %w", err)
		}
		cert.Store(&kp)
		return nil
	}
	if c.tlsCert != "" {
		if err := loadCert(); err != nil {
			return err
		}
		// The certificate is looked up per handshake, so a reload takes
		// effect for new connections and drops none.
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cert.Load(), nil
		}}
		protocols.SetHTTP2(true)
		scheme = "https"
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}

	// The dense transport serves cleartext HTTP/1.1 polls on its event
	// loop and hands everything else to hs; TLS is always net/http's.
	var dt *eventloop.Transport
	transport := "std"
	if c.transport == "dense" && hs.TLSConfig == nil {
		transport = "dense"
		// On the memory store nothing a poll or a publish does waits on
		// I/O, so the loop serves them itself.
		dt = eventloop.New(eventloop.Config{Server: srv.Transport(), Std: hs, ReadHeaderTimeout: c.readHeaderTime, IdleTimeout: hs.IdleTimeout,
			Logger: log, Inline: c.store == "memory"})
	}
	closeAll := hs.Close
	if dt != nil {
		closeAll = dt.Close
	}
	log.Info("longpoll listening",
		"addr", addr, "url", scheme+"://"+addr, "version", Version, "store", storeDesc, "transport", transport,
		"poll_timeout", c.pollTimeout, "max_hold", c.maxHold, "max_held_polls", maxHeld,
		"max_topics_per_poll", c.maxTopicsPerPoll, "max_message_size", c.maxMessageSize,
		"max_batch", c.maxBatch, "max_body_size", c.maxBodySize, "open_files", nofile,
		"auth", c.auth.mode, "cors_origins", c.auth.corsOrigins.String())
	if ready != nil {
		ready <- addr
	}

	errc := make(chan error, 1)
	var aerrc chan error // the admin server's; nil (never ready) without one
	go func() {
		switch {
		case dt != nil:
			errc <- dt.Serve(ln)
		case hs.TLSConfig != nil:
			errc <- hs.ServeTLS(ln, "", "")
		default:
			errc <- hs.Serve(headtime.Listen(ln, c.readHeaderTime))
		}
	}()
	if admin != nil {
		aln, err := net.Listen("tcp", c.auth.adminAddr)
		if err != nil {
			closeAll()
			<-errc
			return fmt.Errorf("listening on --admin-addr %s: %w", c.auth.adminAddr, err)
		}
		log.Info("admin listening", "addr", aln.Addr().String())
		aerrc = make(chan error, 1)
		go func() { aerrc <- admin.Serve(aln) }()
		defer func() {
			admin.Close()
			if err := <-aerrc; err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server", "error", err)
			}
		}()
	}

	// SIGHUP reloads the JWT keys and the TLS certificate without
	// dropping a connection.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("serving: %w", err)
		case err := <-aerrc:
			closeAll()
			<-errc
			aerrc <- err // for the deferred close
			return fmt.Errorf("serving --admin-addr: %w", err)
		case <-hup:
			if jwtAuth != nil {
				if err := jwtAuth.Reload(); err != nil {
					log.Error("reloading JWT keys; keeping the old ones", "error", err)
				} else {
					log.Info("reloaded JWT keys")
				}
			}
			if c.tlsCert != "" {
				if err := loadCert(); err != nil {
					log.Error("reloading the TLS certificate; keeping the old one", "error", err)
				} else {
					log.Info("reloaded the TLS certificate")
				}
			}
		case <-ctx.Done():
			break wait
		}
	}
	log.Info("shutting down", "grace", c.shutdownGrace)
	grace, cancel := context.WithTimeout(context.Background(), c.shutdownGrace)
	defer cancel()
	// The server answers its held polls itself; net/http's Shutdown then
	// waits for the handlers to return and closes idle connections.
	drained := make(chan error, 1)
	go func() { drained <- srv.Shutdown(grace) }()
	if dt != nil {
		err = dt.Shutdown(grace)
	} else {
		err = hs.Shutdown(grace)
	}
	if derr := <-drained; err == nil {
		err = derr
	}
	<-errc
	if err != nil {
		closeAll()
		log.Warn("grace period over with requests in flight", "error", err)
	}
	log.Info("stopped")
	return nil
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
