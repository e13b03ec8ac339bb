package longpoll

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Principal is who a request acts for, as an Authenticator established it.
type Principal struct {
	// Subject identifies the client for limits and idempotency-id scoping.
	Subject string
	// Expires is when the credential expires; zero means never. A poll
	// held at that moment is answered 401 token_expired.
	Expires time.Time
	// IssuedAt is when the credential was issued (a token's iat, else
	// its nbf); zero when unknown. An admin disconnect refuses a
	// subject's credentials issued at or before its time, and those with
	// no IssuedAt while it is in force.
	IssuedAt time.Time
	// Admin grants reading the server's own _longpoll. topics, the metrics
	// and the dashboard; it grants no other topic.
	Admin bool
	// Subscribe and Publish say which topics the principal may read and
	// write; nil grants none.
	Subscribe, Publish TopicMatcher
	// FromCookie reports that the credential came from a cookie, which
	// browsers attach to cross-site requests too: such a principal may
	// publish only from an allowed CORS origin.
	FromCookie bool
}

// TopicMatcher reports whether a topic is granted.
type TopicMatcher interface {
	Match(topic string) bool
}

// Authenticator establishes the Principal of a request. It returns an
// *Error with code unauthorized or token_expired when the request carries
// no valid credential. It must not log credentials.
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, error)
}

// WithAuthenticator makes every request under /v1/ authenticate, and
// checks each topic against the principal's grants. Without it, the
// server is open: anyone may poll any topic and publish to any topic but
// the reserved ones.
func WithAuthenticator(a Authenticator) Option {
	return func(c *config) error {
		c.auth = a
		return nil
	}
}

// WithCORS allows cross-origin requests from the listed origins (scheme,
// host and port, e.g. "https://app.example.com"; "*" allows any origin,
// without credentials). Preflights are answered with a long max-age so a
// cross-origin POST poll does not cost a preflight each time.
func WithCORS(origins ...string) Option {
	return func(c *config) error {
		c.corsOrigins = corsSet(origins)
		return nil
	}
}

func corsSet(origins []string) map[string]bool {
	set := make(map[string]bool, len(origins))
	for _, o := range origins {
		set[strings.TrimSuffix(o, "/")] = true
	}
	return set
}

// ClientLimits bounds what one client (a principal's subject, else an IP
// address) may do. A zero field means no limit.
type ClientLimits struct {
	PublishesPerSecond float64
	PublishBurst       int
	PollsPerSecond     float64
	PollBurst          int
	MaxHeldPolls       int
}

// WithClientLimits enables per-client rate limits; beyond them requests
// get 429 rate_limited with a spread Retry-After.
func WithClientLimits(l ClientLimits) Option {
	return func(c *config) error {
		c.limits = l
		return nil
	}
}

// WithTrustedProxies makes the server take the client address from
// X-Forwarded-For when the connection comes from one of these networks.
func WithTrustedProxies(nets ...netip.Prefix) Option {
	return func(c *config) error {
		c.trustedProxies = append(c.trustedProxies, nets...)
		return nil
	}
}

// clientIP returns the address the request came from, looking through
// trusted proxies' X-Forwarded-For.
func (s *Server) clientIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := ap.Addr().Unmap()
	if !s.trusted(addr) {
		return addr.String()
	}
	// The rightmost address not a trusted proxy is the client.
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return addr.String()
			}
			a = a.Unmap()
			if !s.trusted(a) {
				return a.String()
			}
			addr = a
		}
	}
	return addr.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.trustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// scopeID makes a publisher's idempotency id its own: the broker sees
// subject NUL id, and replies show the id alone.
func scopeID(p *Principal, id string) string {
	if p == nil || id == "" {
		return id
	}
	return p.Subject + "\x00" + id
}

// unscopeID returns the id as its publisher gave it.
func unscopeID(id string) string {
	if i := strings.IndexByte(id, 0); i >= 0 {
		return id[i+1:]
	}
	return id
}

// canSubscribe reports whether p may read topic.
func canSubscribe(p *Principal, topic string) bool {
	if p == nil {
		return true
	}
	if Reserved(topic) {
		return p.Admin
	}
	return p.Subscribe != nil && p.Subscribe.Match(topic)
}

// canPublish reports whether p may publish to topic (reserved topics are
// refused before this).
func canPublish(p *Principal, topic string) bool {
	return p == nil || p.Publish != nil && p.Publish.Match(topic)
}

var errTokenExpired = &Error{Code: CodeTokenExpired, Message: "the token has expired; get a new one and poll again with the same cursor"}

func forbidden(topic string) *Error {
	return &Error{Code: CodeForbidden, Message: "not allowed on topic " + strconv.Quote(topic)}
}

// authenticate returns the request's principal: nil when the server has
// no Authenticator.
func (s *Server) authenticate(r *http.Request) (*Principal, error) {
	if s.cfg.auth == nil {
		return nil, nil
	}
	p, err := s.cfg.auth.Authenticate(r)
	if err == nil && p == nil {
		err = &Error{Code: CodeUnauthorized, Message: "a bearer token is required"}
	}
	if err == nil && s.revoked(p) {
		err = errTokenRevoked
	}
	if s.ma.token != nil {
		s.ma.token.TokenVerified(tokenResult(err))
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// tokenResult classes an Authenticator's answer for the metrics.
func tokenResult(err error) TokenResult {
	var e *Error
	switch {
	case err == nil:
		return TokenOK
	case !errors.As(err, &e):
		return TokenError
	case e.Code == CodeTokenExpired:
		return TokenExpired
	case e.Code == CodeTokenRevoked:
		return TokenRevoked
	case e.Code == CodeUnauthorized:
		return TokenInvalid
	}
	return TokenError
}

// unauthenticated returns the answer to a request that authenticate
// refused with err: err itself, or 429 rate_limited once the request's
// address has spent its poll-start bucket. Every refusal takes a token,
// so a client without a valid credential, which no subject's limits
// reach, cannot make the server check tokens and write 401s as fast as
// it can send requests.
func (s *Server) unauthenticated(r *http.Request, err error) error {
	if s.cfg.limits.PollsPerSecond <= 0 {
		return err
	}
	if ok, retry := s.limit.PollStart("ip:" + s.clientIP(r)); !ok {
		return &Error{Code: CodeRateLimited, Message: "too many requests without a valid token from this address; retry later", RetryAfter: retry}
	}
	return err
}

// clientID names the client for limits: its subject, else its address.
func (s *Server) clientID(r *http.Request, p *Principal) string {
	if p != nil && p.Subject != "" {
		return "sub:" + p.Subject
	}
	return "ip:" + s.clientIP(r)
}

// RequireAdmin wraps h so that, on a server with an Authenticator, only
// principals with the admin grant reach it (for /metrics and the
// dashboard on the main port).
func (s *Server) RequireAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := requestID(r)
		w.Header().Set("X-Request-Id", rid)
		p, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, rid, s.unauthenticated(r, err))
			return
		}
		if p != nil && !p.Admin {
			s.writeError(w, rid, &Error{Code: CodeForbidden, Message: "the admin grant is required"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether the request's Origin is the server's own, as
// the client reached it (a page the server itself served): the same
// scheme and host, ports included, with 80 implied for http and 443 for
// https. Host is compared without regard to case, as browsers lower it.
func (s *Server) sameOrigin(r *http.Request) bool {
	scheme, host, ok := strings.Cut(r.Header.Get("Origin"), "://")
	if !ok || host == "" || r.Host == "" {
		return false
	}
	want := s.scheme(r)
	return strings.EqualFold(scheme, want) &&
		strings.EqualFold(trimDefaultPort(host, want), trimDefaultPort(r.Host, want))
}

// scheme returns the scheme the client used: https on a TLS connection,
// else http, unless the connection comes from a trusted proxy that names
// the scheme in X-Forwarded-Proto. Of several values the last counts: the
// one the nearest proxy set.
func (s *Server) scheme(r *http.Request) string {
	sc := "http"
	if r.TLS != nil {
		sc = "https"
	}
	vs := r.Header.Values("X-Forwarded-Proto")
	if len(vs) == 0 {
		return sc
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !s.trusted(ap.Addr().Unmap()) {
		return sc
	}
	v := vs[len(vs)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	switch v = strings.ToLower(strings.TrimSpace(v)); v {
	case "http", "https":
		return v
	}
	return sc
}

// trimDefaultPort drops scheme's default port from host.
func trimDefaultPort(host, scheme string) string {
	port := ":80"
	if scheme == "https" {
		port = ":443"
	}
	return strings.TrimSuffix(host, port)
}

// cors sets the CORS headers of an allowed cross-origin request and
// answers its preflight; it reports whether the request was answered.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	allowed := s.live.Load().corsOrigins
	if len(allowed) == 0 || origin == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if !allowed[origin] && !allowed["*"] {
		return false
	}
	if allowed[origin] {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}
