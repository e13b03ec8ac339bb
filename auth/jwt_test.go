package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longpoll/longpoll"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func claims(sub string, ttl time.Duration) Claims {
	return Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), IssuedAt: jwt.NewNumericDate(now)},
		Longpoll:         Grants{Subscribe: []string{"chat.*"}, Publish: []string{"chat.room1"}},
	}
}

func write(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func code(err error) string {
	var e *longpoll.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "not a longpoll.Error: " + err.Error()
}

func TestHS256(t *testing.T) {
	secret := write(t, "secret", []byte(strings.Repeat("s3cr3t-", 6)+"\n"))
	other := write(t, "other", []byte(strings.Repeat("0ther-", 8)))
	a, err := New(Config{SecretFile: secret, Now: func() time.Time { return now }, Audience: "api", Issuer: "me"})
	if err != nil {
		t.Fatal(err)
	}
	good := claims("alice", time.Hour)
	good.Audience = jwt.ClaimStrings{"api"}
	good.Issuer = "me"
	tok, err := SignHS256(good, secret)
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.Verify(tok)
	if err != nil || c.Subject != "alice" || c.Longpoll.Subscribe[0] != "chat.*" {
		t.Fatalf("Verify: %+v %v", c, err)
	}
	sign := func(c Claims, file string) string {
		s, err := SignHS256(c, file)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	expired := good
	expired.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Second))
	noExp := good
	noExp.ExpiresAt = nil
	early := good
	early.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
	wrongAud := good
	wrongAud.Audience = jwt.ClaimStrings{"other"}
	wrongIss := good
	wrongIss.Issuer = "them"
	noSub := good
	noSub.Subject = ""
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	cases := map[string]struct {
		tok, code string
	}{
		"expired":             {sign(expired, secret), "token_expired"},
		"expired, wrong key":  {sign(expired, other), "unauthorized"},
		"wrong key":           {sign(good, other), "unauthorized"},
		"no exp":              {sign(noExp, secret), "unauthorized"},
		"not yet valid":       {sign(early, secret), "unauthorized"},
		"wrong audience":      {sign(wrongAud, secret), "unauthorized"},
		"wrong issuer":        {sign(wrongIss, secret), "unauthorized"},
		"no subject":          {sign(noSub, secret), "unauthorized"},
		"alg none":            {none, "unauthorized"},
		"garbage":             {"not.a.token", "unauthorized"},
		"truncated signature": {tok[:len(tok)-3], "unauthorized"},
		"huge":                {strings.Repeat("a", 10000), "unauthorized"},
	}
	for name, c := range cases {
		if _, err := a.Verify(c.tok); err == nil || code(err) != c.code {
			t.Errorf("%s: %v, want %s", name, err, c.code)
		}
	}
}

func TestAuthenticateSources(t *testing.T) {
	secret := write(t, "secret", []byte(strings.Repeat("k", 40)))
	tok, _ := SignHS256(claims("bob", time.Hour), secret)
	a, err := New(Config{SecretFile: secret, Cookie: "longpoll_token", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v1/poll", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	p, err := a.Authenticate(r)
	if err != nil || p.Subject != "bob" || p.FromCookie || !p.Subscribe.Match("chat.x") || p.Publish.Match("chat.x") || !p.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("header: %+v %v", p, err)
	}
	r = httptest.NewRequest("GET", "/v1/poll", nil)
	r.Header.Set("Cookie", "longpoll_token="+tok)
	if p, err := a.Authenticate(r); err != nil || !p.FromCookie {
		t.Fatalf("cookie: %+v %v", p, err)
	}
	// The query string is ignored unless configured.
	r = httptest.NewRequest("GET", "/v1/poll?access_token="+tok, nil)
	if _, err := a.Authenticate(r); code(err) != "unauthorized" {
		t.Fatalf("query token accepted without the option: %v", err)
	}
	a2, _ := New(Config{SecretFile: secret, QueryParam: "access_token", Now: func() time.Time { return now }})
	if _, err := a2.Authenticate(r); err != nil {
		t.Fatalf("query token with the option: %v", err)
	}
	r = httptest.NewRequest("GET", "/v1/poll", nil)
	r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	if _, err := a.Authenticate(r); code(err) != "unauthorized" {
		t.Fatalf("basic auth: %v", err)
	}
}

func TestRS256AndES256(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rpriv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	eder, _ := x509.MarshalECPrivateKey(ek)
	epriv := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: eder})
	rpubDER, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	epubDER, _ := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	pemKeys := append(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rpubDER}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: epubDER})...)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "crv": "P-256", "x": b64(ek.X.FillBytes(make([]byte, 32))), "y": b64(ek.Y.FillBytes(make([]byte, 32)))},
	}})
	rfile, efile := write(t, "r.pem", rpriv), write(t, "e.pem", epriv)
	for name, keys := range map[string][]byte{"pem": pemKeys, "jwks": jwks} {
		a, err := New(Config{KeyFile: write(t, name, keys), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, f := range []string{rfile, efile} {
			tok, err := SignWithKey(claims("k", time.Hour), f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Verify(tok); err != nil {
				t.Errorf("%s: token signed with %s: %v", name, filepath.Base(f), err)
			}
		}
		// An HS256 token made with the public key as secret (the classic
		// algorithm confusion) is refused.
		forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("k", time.Hour)).SignedString(keys)
		if _, err := a.Verify(forged); code(err) != "unauthorized" {
			t.Errorf("%s: algorithm confusion accepted: %v", name, err)
		}
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	os.WriteFile(path, []byte(strings.Repeat("a", 32)), 0o600)
	a, err := New(Config{SecretFile: path, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	oldTok, _ := SignHS256(claims("x", time.Hour), path)
	os.WriteFile(path, []byte(strings.Repeat("b", 32)), 0o600)
	newTok, _ := SignHS256(claims("x", time.Hour), path)
	if _, err := a.Verify(newTok); err == nil {
		t.Fatal("new key used before Reload")
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(newTok); err != nil {
		t.Fatalf("after Reload: %v", err)
	}
	if _, err := a.Verify(oldTok); err == nil {
		t.Fatal("old key still accepted after Reload")
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if err := a.Reload(); err == nil {
		t.Fatal("a short secret was accepted")
	}
	if _, err := a.Verify(newTok); err != nil {
		t.Fatalf("a failed Reload dropped the working key: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	short := write(t, "short", []byte("tooshort"))
	priv := write(t, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))
	for name, cfg := range map[string]Config{
		"neither":      {},
		"both":         {SecretFile: short, KeyFile: short},
		"short secret": {SecretFile: short},
		"missing":      {SecretFile: "/nonexistent/secret"},
		"private key":  {KeyFile: priv},
		"bad jwks":     {KeyFile: write(t, "j", []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}]}`))},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	secret := filepath.Join(dir, "s")
	os.WriteFile(secret, []byte(strings.Repeat("z", 32)), 0o600)
	tok, _ := SignHS256(claims("f", time.Hour), secret)
	f.Add(tok)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	a, err := New(Config{SecretFile: secret, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := a.Verify(s)
		if err != nil {
			if k := code(err); k != "unauthorized" && k != "token_expired" {
				t.Fatalf("Verify(%q): %v", s, err)
			}
			return
		}
		if c.Subject == "" {
			t.Fatalf("accepted a token without subject: %q", s)
		}
	})
}

func FuzzClaimsGrants(f *testing.F) {
	f.Add(`{"subscribe":["chat.*"],"publish":["a.>"],"admin":true}`)
	f.Add(`{"subscribe":[""]}`)
	f.Add(`{"subscribe":"x"}`)
	f.Fuzz(func(t *testing.T, s string) {
		var g Grants
		if json.Unmarshal([]byte(s), &g) != nil {
			return
		}
		set, err := ParseSet(g.Subscribe)
		if err != nil {
			return
		}
		for _, p := range g.Subscribe {
			// A literal pattern (no wildcard) matches itself.
			if !strings.ContainsAny(p, "*>") && !set.Match(p) {
				t.Fatalf("pattern %q does not match itself", p)
			}
		}
	})
}
