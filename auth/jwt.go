// Package auth authenticates longpoll requests with JWT bearer tokens,
// verified locally: HS256 with a shared secret, or RS256/ES256 with public
// keys from a PEM or JWKS file. It implements longpoll.Authenticator.
//
// A token's claims name what its holder may do, as topic patterns:
//
//	{"sub":"alice","exp":1767225600,
//	 "longpoll":{"subscribe":["chat.*","user.42.>"],"publish":["chat.*"],"admin":false}}
//
// Keys are read at start and again on Reload (SIGHUP in longpoll serve);
// requests in flight keep the keys they started with.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longpoll/longpoll"
)

// Claims are a longpoll token's claims.
type Claims struct {
	jwt.RegisteredClaims
	Longpoll Grants `json:"longpoll"`
}

// Grants are the abilities a token names.
type Grants struct {
	Subscribe []string `json:"subscribe,omitempty"`
	Publish   []string `json:"publish,omitempty"`
	Admin     bool     `json:"admin,omitempty"`
}

// Config configures a JWT Authenticator.
type Config struct {
	// SecretFile holds the HS256 shared secret (surrounding white space
	// is trimmed). Exactly one of SecretFile and KeyFile is set.
	SecretFile string
	// KeyFile holds RS256/ES256 public keys: PEM (one or more PUBLIC KEY
	// or CERTIFICATE blocks) or a JWKS document.
	KeyFile string
	// Audience and Issuer, when set, must match the token's aud and iss.
	Audience, Issuer string
	// Cookie names the cookie a browser's token may come in; "" disables.
	Cookie string
	// QueryParam, when set, also accepts the token from that query
	// parameter. Query strings end up in proxy logs: leave it off unless
	// a client cannot send headers or cookies.
	QueryParam string
	// Leeway tolerates clock skew on exp and nbf.
	Leeway time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// JWT is a longpoll.Authenticator for JWT bearer tokens.
type JWT struct {
	cfg  Config
	keys atomic.Pointer[keySet]
}

var _ longpoll.Authenticator = (*JWT)(nil)

// New loads the keys named by cfg.
func New(cfg Config) (*JWT, error) {
	if (cfg.SecretFile == "") == (cfg.KeyFile == "") {
		return nil, errors.New("auth: give exactly one of a secret file (HS256) and a key file (RS256/ES256)")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &JWT{cfg: cfg}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload reads the key files again. On error the old keys stay in use.
func (a *JWT) Reload() error {
	var ks *keySet
	var err error
	if a.cfg.SecretFile != "" {
		ks, err = loadSecret(a.cfg.SecretFile)
	} else {
		ks, err = loadPublicKeys(a.cfg.KeyFile)
	}
	if err != nil {
		return err
	}
	a.keys.Store(ks)
	return nil
}

var (
	errNoToken   = &longpoll.Error{Code: longpoll.CodeUnauthorized, Message: "a bearer token is required (Authorization: Bearer <token>)"}
	errBadToken  = &longpoll.Error{Code: longpoll.CodeUnauthorized, Message: "the token is malformed, wrongly signed or not valid here"}
	errExpired   = &longpoll.Error{Code: longpoll.CodeTokenExpired, Message: "the token has expired"}
	errBadGrants = &longpoll.Error{Code: longpoll.CodeUnauthorized, Message: "the token's longpoll grants hold an invalid topic pattern"}
)

// Authenticate implements longpoll.Authenticator.
func (a *JWT) Authenticate(r *http.Request) (*longpoll.Principal, error) {
	tok, fromCookie := a.token(r)
	if tok == "" {
		return nil, errNoToken
	}
	c, err := a.Verify(tok)
	if err != nil {
		return nil, err
	}
	p := &longpoll.Principal{Subject: c.Subject, Admin: c.Longpoll.Admin, FromCookie: fromCookie}
	if c.ExpiresAt != nil {
		p.Expires = c.ExpiresAt.Time.Add(a.cfg.Leeway)
	}
	switch {
	case c.IssuedAt != nil:
		p.IssuedAt = c.IssuedAt.Time
	case c.NotBefore != nil:
		p.IssuedAt = c.NotBefore.Time
	}
	sub, err1 := ParseSet(c.Longpoll.Subscribe)
	pub, err2 := ParseSet(c.Longpoll.Publish)
	if err1 != nil || err2 != nil {
		return nil, errBadGrants
	}
	p.Subscribe, p.Publish = sub, pub
	return p, nil
}

// token finds the request's token: the Authorization header first, then
// the cookie, then (only if configured) the query parameter.
func (a *JWT) token(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), false
		}
		return "", false
	}
	if a.cfg.Cookie != "" {
		if c, err := r.Cookie(a.cfg.Cookie); err == nil && c.Value != "" {
			return c.Value, true
		}
	}
	if a.cfg.QueryParam != "" {
		if v := r.URL.Query().Get(a.cfg.QueryParam); v != "" {
			return v, false
		}
	}
	return "", false
}

// MaxTokenLen bounds the tokens Verify looks at.
const MaxTokenLen = 8 << 10

// Verify checks a token's signature and claims and returns its claims.
// Errors are *longpoll.Error with code unauthorized or token_expired.
func (a *JWT) Verify(tok string) (*Claims, error) {
	if len(tok) > MaxTokenLen {
		return nil, errBadToken
	}
	ks := a.keys.Load()
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(ks.methods),
		jwt.WithTimeFunc(a.cfg.Now),
		jwt.WithLeeway(a.cfg.Leeway),
		jwt.WithExpirationRequired(),
	}
	if a.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.cfg.Audience))
	}
	if a.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.cfg.Issuer))
	}
	var c Claims
	_, err := jwt.ParseWithClaims(tok, &c, ks.keyFunc, opts...)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		// Only an otherwise valid token is reported as expired: the
		// signature was checked before the claims.
		return nil, errExpired
	default:
		return nil, errBadToken
	}
	if c.Subject == "" || strings.ContainsRune(c.Subject, 0) {
		return nil, errBadToken
	}
	return &c, nil
}

// readKeyFile reads a key file, refusing absurd sizes.
func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if fi.Size() > 1<<20 {
		return nil, fmt.Errorf("auth: %s is larger than 1 MiB: not a key file", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return b, nil
}
