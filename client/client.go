package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/longpoll/longpoll/protocol"
)

// maxReply bounds a reply body: 1000 messages of 64 KiB and their framing.
const maxReply = 80 << 20

const userAgent = "longpoll-go-client/1"

// Client talks protocol v1 to one longpoll server (or a load balancer in
// front of several). It is safe for concurrent use; create one per server
// and share it, so that its connections are reused.
type Client struct {
	cfg        config
	pollURL    string
	streamURL  string
	publishURL string
	hc         *http.Client
	tr         *http.Transport // nil when the caller gave the http.Client
	auth       *tokenSource    // nil without WithToken
	log        logger

	// life is the Client's lifecycle context: Close cancels it, which
	// ends every subscription and publish in flight.
	life      context.Context
	stop      context.CancelFunc
	closeOnce sync.Once
}

// New returns a Client of the server at baseURL ("http://host:8080", or
// with a path prefix "https://example.com/longpoll"), which must be an
// http or https URL.
func New(baseURL string, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http://host[:port][/prefix] or https://host[:port][/prefix]", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: base URL %q: must not have a query or fragment", baseURL)
	}
	if cfg.hc != nil && (cfg.tls != nil || cfg.h2c) {
		return nil, errors.New("client: WithHTTPClient excludes WithTLSConfig and WithH2C")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	base := u.String()
	c := &Client{
		cfg:        cfg,
		pollURL:    base + "/v1/poll",
		streamURL:  base + "/v1/stream",
		publishURL: base + "/v1/publish",
		log:        logger{cfg.logger},
	}
	if cfg.hc != nil {
		c.hc = cfg.hc
	} else {
		c.tr = newTransport(&cfg, u.Scheme)
		c.hc = &http.Client{Transport: c.tr}
	}
	if cfg.token != nil {
		c.auth = &tokenSource{fetch: cfg.token, sem: make(chan struct{}, 1)}
	}
	c.life, c.stop = context.WithCancel(context.Background())
	return c, nil
}

// newTransport returns the one transport all of a Client's requests share:
// keep-alive connections, bounded dials and TLS handshakes, a response
// header timeout past the longest hold, and HTTP/2 where the server
// speaks it.
func newTransport(cfg *config, scheme string) *http.Transport {
	var p http.Protocols
	if cfg.h2c && scheme == "http" {
		// With HTTP1 in the set the transport would never try h2c.
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
		p.SetHTTP2(true)
	}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   DefaultDialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       cfg.tls,
		TLSHandshakeTimeout:   DefaultTLSHandshakeTimeout,
		ResponseHeaderTimeout: cfg.pollTimeout + cfg.pollMargin,
		ExpectContinueTimeout: time.Second,
		// Each subscription holds a connection with HTTP/1.1; keep enough
		// idle ones that a busy client does not redial after every reply.
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		Protocols:           &p,
		// An HTTP/2 connection carries every poll: ping it when it has
		// been quiet longer than a hold, to notice when it is gone.
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: cfg.pollTimeout + cfg.pollMargin,
			PingTimeout:     15 * time.Second,
		},
	}
}

// Close stops the Client: every subscription ends with ErrClosed, every
// publish in flight fails with it, and idle connections are closed. It
// does not wait for the subscriptions' loops, which run in their callers'
// goroutines; a second Close does nothing.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.stop()
		c.closeIdle()
	})
	return nil
}

func (c *Client) closeIdle() {
	if c.tr != nil {
		c.tr.CloseIdleConnections()
	}
}

// scope returns ctx, also cancelled when the Client is closed.
func (c *Client) scope(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.life, func() { cancel(ErrClosed) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
		if c.life.Err() != nil {
			// A request that ended after Close may have left its
			// connection idle.
			c.closeIdle()
		}
	}
}

// stopErr is the error of a scope that ended: ErrClosed when the Client
// was closed, else the caller's ctx.Err().
func stopErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrClosed) {
		return ErrClosed
	}
	return ctx.Err()
}

// response is a reply read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request and returns its 200 reply, or an *Error for any
// other status, a *tokenError, or a transport error. A 401 token_expired
// or token_revoked refreshes the token and is sent again at once, once.
func (c *Client) call(ctx context.Context, method, u string, body []byte) (*response, error) {
	refreshed := false
	for {
		tok := ""
		if c.auth != nil {
			var err error
			if tok, err = c.auth.get(ctx); err != nil {
				return nil, err
			}
		}
		res, err := c.send(ctx, method, u, body, tok)
		if err != nil {
			return nil, err
		}
		if res.status == http.StatusOK {
			return res, nil
		}
		e := parseError(res)
		if e.staleToken() && c.auth != nil && !refreshed {
			c.log.retry(ctx, "token "+strings.TrimPrefix(e.Code, "token_")+"; refreshing", e, 0)
			if _, err := c.auth.refresh(ctx, tok); err != nil {
				return nil, err
			}
			refreshed = true
			continue
		}
		return nil, e
	}
}

func (c *Client) send(ctx context.Context, method, u string, body []byte, tok string) (*response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxReply))
	if err != nil {
		return nil, fmt.Errorf("reading the %d reply: %w", res.StatusCode, err)
	}
	return &response{status: res.StatusCode, header: res.Header, body: b}, nil
}

// parseError reads a non-200 reply: the protocol's error object when the
// body holds one, the status alone otherwise (a proxy's error page).
func parseError(res *response) *Error {
	e := &Error{Status: res.status}
	var body protocol.ErrorReply
	if json.Unmarshal(res.body, &body) == nil {
		e.Code = body.Error.Code
		e.Message = body.Error.Message
		e.RequestID = body.Error.RequestID
		if ms := body.Error.RetryAfterMS; ms > 0 {
			e.RetryAfter = time.Duration(ms) * time.Millisecond
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(res.status)
	}
	if e.RequestID == "" {
		e.RequestID = res.header.Get("X-Request-Id")
	}
	if e.RetryAfter == 0 {
		e.RetryAfter = parseRetryAfter(res.header.Get("Retry-After"))
	}
	return e
}

// maxServerWait caps a wait the server asks for, against a misconfigured
// server telling clients to come back next year.
const maxServerWait = time.Hour

// parseRetryAfter reads a Retry-After header: whole seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return min(time.Duration(n)*time.Second, maxServerWait)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), maxServerWait)
	}
	return 0
}

// tokenSource caches the bearer token and refreshes it once for all the
// callers that saw it expire.
type tokenSource struct {
	fetch func(context.Context) (string, error)
	sem   chan struct{} // held while fetching; a channel so waiters can give up
	tok   string
	ok    bool
}

func (s *tokenSource) lock(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *tokenSource) unlock() { <-s.sem }

// get returns the current token, fetching the first one.
func (s *tokenSource) get(ctx context.Context) (string, error) {
	if err := s.lock(ctx); err != nil {
		return "", err
	}
	defer s.unlock()
	if s.ok {
		return s.tok, nil
	}
	return s.fetchLocked(ctx)
}

// refresh replaces the token stale, unless another caller already has.
func (s *tokenSource) refresh(ctx context.Context, stale string) (string, error) {
	if err := s.lock(ctx); err != nil {
		return "", err
	}
	defer s.unlock()
	if s.ok && s.tok != stale {
		return s.tok, nil
	}
	s.ok = false
	return s.fetchLocked(ctx)
}

func (s *tokenSource) fetchLocked(ctx context.Context) (string, error) {
	t, err := s.fetch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", &tokenError{err}
	}
	s.tok, s.ok = t, true
	return t, nil
}

// backoff computes the waits between failed attempts: full jitter, a
// uniformly random time below min(cap, base·2ⁿ) for the nth failure in a
// row, floored by what the server asked for.
type backoff struct {
	base, cap time.Duration
	rand      func(int64) int64
	n         int
}

func (c *Client) newBackoff() backoff {
	return backoff{base: c.cfg.backoffBase, cap: c.cfg.backoffCap, rand: c.cfg.rand}
}

// next returns the wait before the next attempt, at least floor.
func (b *backoff) next(floor time.Duration) time.Duration {
	ceil := b.base
	for i := 0; i < b.n && ceil < b.cap; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.cap)
	if ceil < b.cap {
		b.n++
	}
	return max(time.Duration(b.rand(int64(ceil))), min(floor, maxServerWait))
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
