package longpoll_test

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

// TestSameOriginComparesScheme: a publish authorized by a cookie is let
// through from the server's own origin only, scheme included: a page
// served over http may not publish as the https site of the same host,
// nor the other way. Behind a trusted proxy, X-Forwarded-Proto names the
// scheme; from anyone else it is ignored.
func TestSameOriginComparesScheme(t *testing.T) {
	direct := newAuthEnv(t)
	proxied := newAuthEnv(t, longpoll.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8")))
	cases := []struct {
		name    string
		a       *authEnv
		host    string // the Host header; empty: the server's address
		origin  string // "%" stands for the server's address
		proto   string // X-Forwarded-Proto
		allowed bool
	}{
		{"own origin", direct, "", "http://%", "", true},
		{"https page, http server", direct, "", "https://%", "", false},
		{"another port", direct, "example.com", "http://example.com:8080", "", false},
		{"another host", direct, "example.com", "http://example.org", "", false},
		{"host in another case", direct, "Example.COM", "http://example.com", "", true},
		{"default port in Host", direct, "example.com:80", "http://example.com", "", true},
		{"default port in Origin", direct, "example.com", "http://example.com:80", "", true},
		{"https's default port on http", direct, "example.com:443", "http://example.com", "", false},
		{"null origin", direct, "", "null", "", false},
		{"proto from an untrusted peer", direct, "example.com", "https://example.com", "https", false},
		{"proto from a trusted proxy", proxied, "example.com", "https://example.com", "https", true},
		{"http page behind a TLS proxy", proxied, "example.com", "http://example.com", "https", false},
		{"https's default port", proxied, "example.com:443", "https://example.com", "https", true},
		{"last proto counts", proxied, "example.com", "https://example.com", "http, https", true},
		{"unknown proto ignored", proxied, "example.com", "http://example.com", "gopher", true},
		{"no proto: the connection's", proxied, "example.com", "http://example.com", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.a.token("carol", time.Hour, []string{"c.*"}, []string{"c.*"}, false)
			req, _ := http.NewRequest("POST", c.a.url+"/v1/publish", strings.NewReader(`{"topic":"c.x","data":1}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Cookie", "longpoll_token="+tok)
			addr := strings.TrimPrefix(c.a.url, "http://")
			req.Header.Set("Origin", strings.ReplaceAll(c.origin, "%", addr))
			if c.host != "" {
				req.Host = c.host
			}
			if c.proto != "" {
				req.Header.Set("X-Forwarded-Proto", c.proto)
			}
			resp, err := c.a.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := map[bool]int{true: 200, false: 403}[c.allowed]; resp.StatusCode != want {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, want)
			}
		})
	}
}
