// Package web serves the pages of longpoll serve: the demo at /, the live
// dashboard at /dashboard, and the browser client at /longpoll.js, from
// assets built by js/ (npm run build) and committed in dist/, so that
// building the binary needs no npm step.
//
// The handler owns only its own paths, each for GET and HEAD; every other
// request, everything under /v1/ included, goes to Options.Next, so the
// pages never shadow the API.
//
//	mux.Handle("/", web.Handler(web.Options{Demo: true, Dashboard: true, Admin: srv.RequireAdmin, Next: srv}))
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// Options says which pages to serve.
type Options struct {
	// Demo serves the demo chat at / and its assets.
	Demo bool
	// Dashboard serves the live dashboard at /dashboard and its assets.
	Dashboard bool
	// Admin, when not nil, guards the dashboard page: longpoll.Server's
	// RequireAdmin. A request it refuses gets the page all the same, with
	// the refusal's status (401 or 403): the page holds no data, and its
	// script, refused by the admin API and the stats topic too, shows how
	// to sign in instead of the API's JSON error.
	Admin func(http.Handler) http.Handler
	// Next serves every request the pages do not own: the longpoll.Server.
	// Nil answers them 404.
	Next http.Handler
}

// asset is one embedded file, ready to serve.
type asset struct {
	name   string
	ctype  string
	body   []byte
	gz     []byte // nil when gzip does not pay
	etag   string
	page   bool // an HTML page: gets the security headers
	public bool // may be loaded by other origins (the client module)
}

func load(name string) *asset {
	b, err := fs.ReadFile(dist, "dist/"+name)
	if err != nil {
		panic("web: embedded asset missing: " + name + " (run npm run build in js/)")
	}
	sum := sha256.Sum256(b)
	a := &asset{name: name, body: b, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
	switch path.Ext(name) {
	case ".html":
		a.ctype, a.page = "text/html; charset=utf-8", true
	case ".js":
		a.ctype = "text/javascript; charset=utf-8"
	case ".css":
		a.ctype = "text/css; charset=utf-8"
	}
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	w.Write(b)
	w.Close()
	if z.Len() < len(b)*9/10 {
		a.gz = z.Bytes()
	}
	return a
}

// csp allows the pages nothing but their own origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (a *asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	// Revalidated each time, cheaply: the ETag changes with the content.
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Encoding")
	if a.page {
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
	}
	if a.public {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	body, etag := a.body, a.etag
	if a.gz != nil && acceptsGzip(r) {
		body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}

// Handler returns the handler of the pages that o turns on; /longpoll.js
// is served in any case.
func Handler(o Options) http.Handler {
	routes := map[string]http.Handler{}
	client := load("longpoll.js")
	client.public = true
	routes["/longpoll.js"] = client
	if o.Demo || o.Dashboard {
		routes["/assets/app.css"] = load("assets/app.css")
	}
	if o.Demo {
		routes["/"] = load("index.html")
		routes["/assets/demo.js"] = load("assets/demo.js")
	}
	if o.Dashboard {
		var page http.Handler = load("dashboard.html")
		if o.Admin != nil {
			page = adminPage(o.Admin, load("dashboard.html"))
		}
		routes["/dashboard"] = page
		routes["/assets/dashboard.js"] = load("assets/dashboard.js")
	}
	next := o.Next
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if h, ok := routes[p]; ok && !strings.HasPrefix(p, "/v1/") {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminPage serves page to the requests that admin lets through, and to
// the others with the status admin refused them with, so that a browser
// without an admin token gets the page's sign-in form.
func adminPage(admin func(http.Handler) http.Handler, page *asset) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			page.ServeHTTP(w, r) // 405
			return
		}
		rec := &refusal{header: http.Header{}}
		passed := false
		admin(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			passed = true
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			page.ServeHTTP(w, r)
		})).ServeHTTP(rec, r)
		if passed {
			return
		}
		h := w.Header()
		for _, k := range []string{"X-Request-Id", "Www-Authenticate"} {
			if v := rec.header.Values(k); len(v) > 0 {
				h[k] = v
			}
		}
		h.Set("Content-Type", page.ctype)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Length", strconv.Itoa(len(page.body)))
		status := rec.status
		if status < 400 {
			status = http.StatusUnauthorized
		}
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			w.Write(page.body)
		}
	})
}

// refusal records what an admin guard answered, to replace its body.
type refusal struct {
	header http.Header
	status int
}

func (f *refusal) Header() http.Header { return f.header }
func (f *refusal) WriteHeader(code int) {
	if f.status == 0 {
		f.status = code
	}
}
func (f *refusal) Write(b []byte) (int, error) {
	f.WriteHeader(http.StatusOK)
	return len(b), nil
}
