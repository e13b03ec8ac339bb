package web_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/web"
)

// adminHeader is a stand-in authenticator: the header X-Test-Admin says
// whether the request has the admin grant.
type adminHeader struct{}

func (adminHeader) Authenticate(r *http.Request) (*longpoll.Principal, error) {
	v := r.Header.Get("X-Test-Admin")
	if v == "" {
		return nil, &longpoll.Error{Code: longpoll.CodeUnauthorized, Message: "no token"}
	}
	return &longpoll.Principal{Subject: "s", Admin: v == "yes"}, nil
}

func newServer(t *testing.T, o web.Options, auth bool) *httptest.Server {
	t.Helper()
	b := memory.New()
	t.Cleanup(func() { b.Close() })
	var opts []longpoll.Option
	if auth {
		opts = append(opts, longpoll.WithAuthenticator(adminHeader{}))
	}
	srv, err := longpoll.New(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	o.Next = srv
	if o.Admin == nil {
		o.Admin = srv.RequireAdmin
	}
	hs := httptest.NewServer(web.Handler(o))
	t.Cleanup(hs.Close)
	return hs
}

type answer struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, hs *httptest.Server, method, path string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, hs.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

// jsonCode returns the protocol error code of a JSON answer, "" if none.
func jsonCode(a answer) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") || json.Unmarshal([]byte(a.body), &e) != nil {
		return ""
	}
	return e.Error.Code
}

func TestPagesAndAPI(t *testing.T) {
	hs := newServer(t, web.Options{Demo: true, Dashboard: true}, false)
	for _, tc := range []struct {
		method, path string
		status       int
		ctype, has   string
		code         string // the JSON error code, for answers of the API
	}{
		{"GET", "/", 200, "text/html", `src="assets/demo.js"`, ""},
		{"HEAD", "/", 200, "text/html", "", ""},
		{"GET", "/?topic=room1", 200, "text/html", "", ""},
		{"GET", "/dashboard", 200, "text/html", `src="assets/dashboard.js"`, ""},
		{"GET", "/longpoll.js", 200, "text/javascript", "export", ""},
		{"GET", "/assets/demo.js", 200, "text/javascript", `"../longpoll.js"`, ""},
		{"GET", "/assets/dashboard.js", 200, "text/javascript", "_longpoll.stats", ""},
		{"GET", "/assets/app.css", 200, "text/css", "", ""},
		{"POST", "/", 405, "text/plain", "", ""},
		// The API keeps its JSON answers, 404 included.
		{"GET", "/v1/poll?topic=t&timeout=0", 200, "application/json", `"timeout":true`, ""},
		{"GET", "/v1/", 404, "application/json", "", "not_found"},
		{"GET", "/v1/assets/app.css", 404, "application/json", "", "not_found"},
		{"GET", "/v1/longpoll.js", 404, "application/json", "", "not_found"},
		{"GET", "/index.html", 404, "application/json", "", "not_found"},
		{"GET", "/assets/nope.js", 404, "application/json", "", "not_found"},
		{"GET", "/dashboard/", 404, "application/json", "", "not_found"},
		{"GET", "/healthz", 200, "application/json", "ok", ""},
	} {
		a := get(t, hs, tc.method, tc.path)
		if a.status != tc.status || !strings.HasPrefix(a.header.Get("Content-Type"), tc.ctype) || !strings.Contains(a.body, tc.has) || jsonCode(a) != tc.code {
			t.Errorf("%s %s: %d %q %q, want %d %q containing %q (code %q)", tc.method, tc.path, a.status, a.header.Get("Content-Type"), trim(a.body), tc.status, tc.ctype, tc.has, tc.code)
		}
	}
	page := get(t, hs, "GET", "/")
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "ETag"} {
		if page.header.Get(h) == "" {
			t.Errorf("/ has no %s header", h)
		}
	}
	if js := get(t, hs, "GET", "/longpoll.js"); js.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("/longpoll.js cannot be imported from other origins: %v", js.header)
	}
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func TestPagesTurnOff(t *testing.T) {
	hs := newServer(t, web.Options{}, false)
	for _, p := range []string{"/", "/dashboard", "/assets/demo.js", "/assets/dashboard.js", "/assets/app.css"} {
		if a := get(t, hs, "GET", p); a.status != 404 || jsonCode(a) != "not_found" {
			t.Errorf("pages off: GET %s: %d %q", p, a.status, trim(a.body))
		}
	}
	if a := get(t, hs, "GET", "/longpoll.js"); a.status != 200 {
		t.Errorf("/longpoll.js: %d", a.status)
	}
	hs = newServer(t, web.Options{Dashboard: true}, false)
	if a := get(t, hs, "GET", "/"); a.status != 404 {
		t.Errorf("demo off: GET /: %d", a.status)
	}
	if a := get(t, hs, "GET", "/dashboard"); a.status != 200 {
		t.Errorf("demo off: GET /dashboard: %d", a.status)
	}
}

func TestDashboardNeedsAdmin(t *testing.T) {
	hs := newServer(t, web.Options{Demo: true, Dashboard: true}, true)
	for _, tc := range []struct {
		path, admin string
		status      int
	}{
		{"/dashboard", "", 401},
		{"/dashboard", "no", 403},
		{"/dashboard", "yes", 200},
		{"/", "", 200}, // the demo page is public; its polls authenticate
		{"/assets/dashboard.js", "", 200},
	} {
		var hdr []string
		if tc.admin != "" {
			hdr = []string{"X-Test-Admin", tc.admin}
		}
		a := get(t, hs, "GET", tc.path, hdr...)
		if a.status != tc.status {
			t.Errorf("GET %s as admin=%q: %d, want %d", tc.path, tc.admin, a.status, tc.status)
		}
		// A refused browser gets the page, whose script shows the sign-in
		// form, rather than the API's JSON error.
		if tc.path == "/dashboard" && (!strings.HasPrefix(a.header.Get("Content-Type"), "text/html") || !strings.Contains(a.body, `id="signin"`) ||
			a.header.Get("Content-Security-Policy") == "" || (tc.status != 200 && a.header.Get("Cache-Control") != "no-store")) {
			t.Errorf("GET %s as admin=%q: not the dashboard page: %v %.100q", tc.path, tc.admin, a.header, a.body)
		}
	}
}

func TestCaching(t *testing.T) {
	hs := newServer(t, web.Options{Demo: true}, false)
	first := get(t, hs, "GET", "/assets/demo.js")
	etag := first.header.Get("ETag")
	if etag == "" || first.header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("headers %v", first.header)
	}
	if a := get(t, hs, "GET", "/assets/demo.js", "If-None-Match", etag); a.status != 304 || a.body != "" {
		t.Fatalf("revalidation: %d", a.status)
	}
	z := get(t, hs, "GET", "/longpoll.js", "Accept-Encoding", "gzip")
	if z.header.Get("Content-Encoding") != "gzip" || z.header.Get("ETag") == get(t, hs, "GET", "/longpoll.js").header.Get("ETag") {
		t.Fatalf("gzip: %v", z.header)
	}
	r, err := gzip.NewReader(strings.NewReader(z.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(r)
	want, err := os.ReadFile("dist/longpoll.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, want) {
		t.Fatal("gzipped /longpoll.js differs from dist/longpoll.js")
	}
}
