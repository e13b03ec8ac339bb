package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// Defaults of the Client's settings.
const (
	// DefaultBackoffBase and DefaultBackoffCap bound the wait before a
	// retry: attempt n waits a uniformly random time below
	// min(cap, base·2ⁿ) (full jitter).
	DefaultBackoffBase = 500 * time.Millisecond
	DefaultBackoffCap  = 30 * time.Second
	// DefaultPollTimeout is the hold a poll asks of the server.
	DefaultPollTimeout = 25 * time.Second
	// DefaultPollMargin is added to the hold to give each request its
	// deadline, so a connection that a proxy dropped silently is noticed.
	DefaultPollMargin = 10 * time.Second
	// DefaultDialTimeout and DefaultTLSHandshakeTimeout bound opening a
	// connection.
	DefaultDialTimeout         = 10 * time.Second
	DefaultTLSHandshakeTimeout = 10 * time.Second
	// DefaultStreamIdleTimeout is how long a stream (WithTransport(SSE))
	// may send nothing, not even a ping, before the client gives it up:
	// two of the server's 15 s pings missed, plus DefaultPollMargin.
	DefaultStreamIdleTimeout = 2*15*time.Second + DefaultPollMargin
	// maxQuery is the longest query string a poll sends with GET; past it
	// the poll is a POST with a JSON body.
	maxQuery = 4096
)

type config struct {
	hc          *http.Client
	tls         *tls.Config
	h2c         bool
	token       func(context.Context) (string, error)
	backoffBase time.Duration
	backoffCap  time.Duration
	pollTimeout time.Duration
	pollMargin  time.Duration
	transport   Transport
	streamIdle  time.Duration
	logger      *slog.Logger
	rand        func(n int64) int64 // uniform in [0, n); tests replace it
}

func defaultConfig() config {
	return config{
		backoffBase: DefaultBackoffBase,
		backoffCap:  DefaultBackoffCap,
		pollTimeout: DefaultPollTimeout,
		pollMargin:  DefaultPollMargin,
		streamIdle:  DefaultStreamIdleTimeout,
		logger:      slog.New(slog.DiscardHandler),
		rand:        rand.Int64N,
	}
}

// Option configures a Client. New fails on an invalid one.
type Option func(*config) error

// WithToken sets the hook that supplies the bearer token sent as
// "Authorization: Bearer <token>" on every request. It is called before
// the first request, and again, at once, when the server answers 401
// token_expired or token_revoked; a second such answer in a row is retried
// with backoff, asking the hook again.
// An error from the hook ends the call or subscription that needed the
// token: the hook does its own retrying. It may be called from several
// goroutines, never concurrently.
func WithToken(hook func(ctx context.Context) (string, error)) Option {
	return func(c *config) error {
		if hook == nil {
			return errors.New("WithToken: nil hook")
		}
		c.token = hook
		return nil
	}
}

// WithBackoff sets the base and the cap of the reconnect backoff (defaults
// DefaultBackoffBase and DefaultBackoffCap). The wait before the nth retry
// in a row is a uniformly random time below min(cap, base·2ⁿ), and never
// less than what the server asked for with Retry-After or retry_after_ms.
// A success resets it.
func WithBackoff(base, cap time.Duration) Option {
	return func(c *config) error {
		if base <= 0 || cap < base {
			return fmt.Errorf("WithBackoff(%v, %v): need 0 < base <= cap", base, cap)
		}
		c.backoffBase, c.backoffCap = base, cap
		return nil
	}
}

// WithPollTimeout sets the hold each poll asks of the server (default
// DefaultPollTimeout). The server may hold less: it caps holds at its
// --max-hold. Keep it under the idle timeout of every proxy on the way.
func WithPollTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithPollTimeout(%v): must be positive", d)
		}
		c.pollTimeout = d
		return nil
	}
}

// WithPollMargin sets how long past the hold a request may take before the
// client gives up on it and reconnects (default DefaultPollMargin). It
// bounds the time to notice a connection that was dropped without a word.
func WithPollMargin(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithPollMargin(%v): must be positive", d)
		}
		c.pollMargin = d
		return nil
	}
}

// WithTLSConfig sets the TLS configuration of the Client's transport, for
// a private CA or client certificates. HTTP/2 is still negotiated.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *config) error {
		if cfg == nil {
			return errors.New("WithTLSConfig: nil config")
		}
		c.tls = cfg.Clone()
		return nil
	}
}

// WithH2C makes the Client speak cleartext HTTP/2 (h2c, with prior
// knowledge) to an http:// server, so that all its polls and publishes
// share one connection. Only use it when the server is known to speak h2c
// (longpoll serve does); HTTP/1.1 is then not attempted. https:// URLs
// negotiate HTTP/2 by themselves.
func WithH2C() Option {
	return func(c *config) error {
		c.h2c = true
		return nil
	}
}

// WithHTTPClient makes the Client send its requests with hc instead of its
// own transport. The Client then owns none of hc's settings: hc.Timeout,
// if set, must exceed the poll timeout plus margin (under SSE it cuts
// every stream: leave it 0), and Close does not close hc's connections. It excludes WithTLSConfig and WithH2C.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return errors.New("WithHTTPClient: nil client")
		}
		c.hc = hc
		return nil
	}
}

// WithLogger sets where the Client reports failed attempts and the waits
// before their retries (Warn); errors that end a call are returned, not
// logged. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// Transport is how Subscribe receives messages from the server.
type Transport int

const (
	// Poll, the default, receives with long polls (GET /v1/poll): one
	// request per reply, each held until messages arrive or the hold ends.
	Poll Transport = iota
	// SSE receives with one server-sent event stream (GET /v1/stream)
	// that the server keeps open for minutes: no request per reply, and
	// a message goes out as soon as it is published, also while the
	// previous ones are being read. See Subscribe for what differs.
	SSE
)

func (t Transport) String() string {
	switch t {
	case Poll:
		return "poll"
	case SSE:
		return "sse"
	}
	return fmt.Sprintf("Transport(%d)", int(t))
}

// WithTransport sets how Subscribe receives: Poll (the default) or SSE.
// Both yield the same events for the same messages, and their cursors are
// one thing: a subscription saved under one resumes under the other.
func WithTransport(t Transport) Option {
	return func(c *config) error {
		if t != Poll && t != SSE {
			return fmt.Errorf("WithTransport(%d): want Poll or SSE", int(t))
		}
		c.transport = t
		return nil
	}
}

// WithStreamIdleTimeout sets how long a stream (WithTransport(SSE)) may
// send nothing, no event and no ping, before the client gives it up and
// reconnects from its last event (default DefaultStreamIdleTimeout). It
// notices a connection dropped without a word, and a proxy that buffers
// the stream instead of passing it on. Keep it above twice the server's
// --stream-ping (15 s by default).
func WithStreamIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithStreamIdleTimeout(%v): must be positive", d)
		}
		c.streamIdle = d
		return nil
	}
}
