package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/auth"
)

// Defaults of the per-client limits under --auth jwt.
const (
	defaultRatePublish      = 50.0
	defaultRatePublishBurst = 100
	defaultRatePoll         = 20.0
	defaultRatePollBurst    = 100
	defaultMaxHeldPerClient = 100
)

// authConfig is the security settings of longpoll serve.
type authConfig struct {
	mode             string
	secretFile       string
	keyFile          string
	audience         string
	issuer           string
	cookie           string
	queryParam       string
	corsOrigins      listFlag
	trustedProxies   listFlag
	ratePublish      float64
	ratePublishBurst int
	ratePoll         float64
	ratePollBurst    int
	maxHeldClient    int
	adminAddr        string
	allowOpen        bool
}

// listFlag is a comma-separated list flag that may also be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func authFlags(fs *flag.FlagSet, c *authConfig) {
	fs.StringVar(&c.mode, "auth", "none", "authentication: none or jwt (none only on loopback unless --allow-unauthenticated)")
	fs.StringVar(&c.secretFile, "jwt-secret-file", "", "file holding the HS256 shared secret (at least 32 bytes)")
	fs.StringVar(&c.keyFile, "jwt-key-file", "", "file holding RS256/ES256 public keys: PEM or JWKS")
	fs.StringVar(&c.audience, "jwt-audience", "", "required token audience (aud), when set")
	fs.StringVar(&c.issuer, "jwt-issuer", "", "required token issuer (iss), when set")
	fs.StringVar(&c.cookie, "auth-cookie", "longpoll_token", "cookie a browser's token may come in (\"\" to disable)")
	fs.StringVar(&c.queryParam, "auth-query-param", "", "query parameter a token may come in (off when empty; query strings end up in logs)")
	fs.Var(&c.corsOrigins, "cors-origins", "origins allowed to make cross-origin requests, comma-separated (e.g. https://app.example.com)")
	fs.Var(&c.trustedProxies, "trusted-proxies", "addresses or CIDR networks of proxies whose X-Forwarded-For is trusted, comma-separated")
	fs.Float64Var(&c.ratePublish, "rate-publish", -1, fmt.Sprintf("publishes per second per client (0: off; default %v under --auth jwt, off under none)", defaultRatePublish))
	fs.IntVar(&c.ratePublishBurst, "rate-publish-burst", defaultRatePublishBurst, "burst of publishes per client")
	fs.Float64Var(&c.ratePoll, "rate-poll", -1, fmt.Sprintf("poll starts per second per client (0: off; default %v under --auth jwt, off under none)", defaultRatePoll))
	fs.IntVar(&c.ratePollBurst, "rate-poll-burst", defaultRatePollBurst, "burst of poll starts per client")
	fs.IntVar(&c.maxHeldClient, "max-held-per-client", -1, fmt.Sprintf("polls one client may hold at once (0: off; default %d under --auth jwt, off under none)", defaultMaxHeldPerClient))
	fs.StringVar(&c.adminAddr, "admin-addr", "", "separate address serving /metrics without authentication (then not served on --addr)")
	fs.BoolVar(&c.allowOpen, "allow-unauthenticated", false, "allow --auth none on an address other than loopback")
}

func (c *authConfig) check(addr string) error {
	switch c.mode {
	case "none":
		if !c.allowOpen && !loopback(addr) {
			return fmt.Errorf("--addr %s is not a loopback address: use --auth jwt, or --allow-unauthenticated to serve anyone", addr)
		}
	case "jwt":
		if (c.secretFile == "") == (c.keyFile == "") {
			return errors.New("--auth jwt needs exactly one of --jwt-secret-file and --jwt-key-file")
		}
	default:
		return fmt.Errorf("--auth %q: must be none or jwt", c.mode)
	}
	if _, err := c.proxies(); err != nil {
		return err
	}
	for _, o := range c.corsOrigins {
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return fmt.Errorf("--cors-origins %q: an origin is scheme://host[:port]", o)
		}
	}
	return nil
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (c *authConfig) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.trustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies %q: not an address or CIDR network", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// limits returns the per-client limits: explicit values win; unset ones
// (-1) default to on under jwt and off under none.
func (c *authConfig) limits() longpoll.ClientLimits {
	pick := func(v, def float64) float64 {
		if v >= 0 {
			return v
		}
		if c.mode == "jwt" {
			return def
		}
		return 0
	}
	return longpoll.ClientLimits{
		PublishesPerSecond: pick(c.ratePublish, defaultRatePublish),
		PublishBurst:       c.ratePublishBurst,
		PollsPerSecond:     pick(c.ratePoll, defaultRatePoll),
		PollBurst:          c.ratePollBurst,
		MaxHeldPolls:       int(pick(float64(c.maxHeldClient), defaultMaxHeldPerClient)),
	}
}

// options returns the server options for the security settings, and the
// JWT authenticator (nil under --auth none) for reloads.
func (c *authConfig) options() ([]longpoll.Option, *auth.JWT, error) {
	proxies, _ := c.proxies()
	opts := []longpoll.Option{longpoll.WithClientLimits(c.limits()), longpoll.WithTrustedProxies(proxies...)}
	if len(c.corsOrigins) > 0 {
		opts = append(opts, longpoll.WithCORS(c.corsOrigins...))
	}
	if c.mode != "jwt" {
		return opts, nil, nil
	}
	a, err := auth.New(auth.Config{
		SecretFile: c.secretFile, KeyFile: c.keyFile, Audience: c.audience, Issuer: c.issuer,
		Cookie: c.cookie, QueryParam: c.queryParam, Leeway: 5 * time.Second,
	})
	if err != nil {
		return nil, nil, err
	}
	return append(opts, longpoll.WithAuthenticator(a)), a, nil
}

// runToken prints a signed token.
func runToken(_ context.Context, args []string, io IO) int {
	var (
		secretFile, keyFile, sub, aud, iss string
		subscribe, publish                 listFlag
		admin                              bool
		ttl                                time.Duration
	)
	fs := newFlagSet("token", "", io)
	fs.StringVar(&secretFile, "secret-file", "", "HS256 shared secret file")
	fs.StringVar(&keyFile, "key-file", "", "RS256/ES256 private key file (PEM)")
	fs.StringVar(&sub, "sub", "dev", "subject: the identity used for limits and id scoping")
	fs.Var(&subscribe, "subscribe", "topic pattern the holder may subscribe to (repeatable, or comma-separated)")
	fs.Var(&publish, "publish", "topic pattern the holder may publish to (repeatable, or comma-separated)")
	fs.BoolVar(&admin, "admin", false, "grant the admin ability (metrics, dashboard, _longpoll. topics)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	fs.StringVar(&aud, "aud", "", "audience (aud) claim")
	fs.StringVar(&iss, "iss", "", "issuer (iss) claim")
	pos, code, ok := parseArgs(fs, args, nil, io)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(io, "token", "unexpected argument %q", pos[0])
	}
	if (secretFile == "") == (keyFile == "") {
		return usageError(io, "token", "give exactly one of --secret-file and --key-file")
	}
	if ttl <= 0 {
		return usageError(io, "token", "--ttl must be positive")
	}
	for _, p := range append(append([]string{}, subscribe...), publish...) {
		if _, err := auth.ParsePattern(p); err != nil {
			return usageError(io, "token", "%v", err)
		}
	}
	now := time.Now()
	c := auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: sub, IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), Issuer: iss,
		},
		Longpoll: auth.Grants{Subscribe: subscribe, Publish: publish, Admin: admin},
	}
	if aud != "" {
		c.Audience = jwt.ClaimStrings{aud}
	}
	var tok string
	var err error
	if secretFile != "" {
		tok, err = auth.SignHS256(c, secretFile)
	} else {
		tok, err = auth.SignWithKey(c, keyFile)
	}
	if err != nil {
		fmt.Fprintf(io.Stderr, "longpoll token: %v\n", err)
		return ExitError
	}
	fmt.Fprintln(io.Stdout, tok)
	return ExitOK
}
