package longpoll

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/protocol"
)

// The admin API: paths under /v1/admin/ (docs/protocol.md, "Admin API").

// NodeInfo names this server in GET /v1/admin/node and in the heartbeats
// other nodes list.
type NodeInfo struct {
	Name    string // unique among the nodes sharing a store, e.g. host:port
	Version string
	Commit  string
	Built   string // when the binary was built, RFC 3339, or ""
	// Store is the kind of store: memory, disk, redis, or another name.
	Store string
	// ConfigDigest identifies the node's effective settings, so that an
	// operator can tell nodes configured alike from the rest.
	ConfigDigest string
}

// WithNodeInfo sets what GET /v1/admin/node and the heartbeats say of
// this node.
func WithNodeInfo(n NodeInfo) Option {
	return func(c *config) error {
		c.node = n
		return nil
	}
}

// WithAdminAPI makes ServeHTTP serve the admin API under /v1/admin/, with
// the access AdminHandler checks. Without it those paths answer 404 and
// a program mounts AdminHandler where it wants the API.
func WithAdminAPI() Option {
	return func(c *config) error {
		c.admin = true
		return nil
	}
}

// AdminHandler returns the admin API. On a server with an Authenticator
// it answers principals with the admin grant only (401 without a valid
// token, 403 without the grant); on a server without one, loopback
// clients only (the address taken through WithTrustedProxies).
func (s *Server) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveAdminRequest(w, r, true)
	})
}

// OpenAdminHandler returns the admin API with no access check, for a
// listener only operators reach (longpoll serve --admin-addr).
func (s *Server) OpenAdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveAdminRequest(w, r, false)
	})
}

// serveAdminRequest serves one request under /v1/admin/, as ServeHTTP
// serves the protocol: request id, path cleaning, counting.
func (s *Server) serveAdminRequest(w http.ResponseWriter, r *http.Request, guarded bool) {
	rid := requestID(r)
	w.Header().Set("X-Request-Id", rid)
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	if to, ok := cleanTarget(r); ok {
		redirectClean(rec, to)
	} else {
		s.serveAdmin(rec, r, rid, guarded)
	}
	if s.log.Enabled(r.Context(), slog.LevelInfo) {
		s.accessLog(rid, &parkLog{method: r.Method, path: r.URL.Path, remote: r.RemoteAddr}, rec.status, rec.bytes, time.Since(start))
	}
	if s.ma.req != nil {
		s.ma.req.RequestServed(RouteAdmin, rec.status, int(rec.bytes), time.Since(start))
	}
}

// AdminMetrics records admin actions.
type AdminMetrics interface {
	// AdminAction records one admin request answered 2xx: topics,
	// topic_delete, disconnect, node, drain or undrain.
	AdminAction(action string)
}

// serveAdmin routes an admin request; guarded applies AdminHandler's
// access rule.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request, rid string, guarded bool) {
	p := r.URL.Path
	var allow, action string
	switch {
	case p == "/v1/admin/topics":
		allow, action = "GET", "topics"
	case strings.HasPrefix(p, "/v1/admin/topics/"):
		allow, action = "DELETE", "topic_delete"
	case p == "/v1/admin/disconnect":
		allow, action = "POST", "disconnect"
	case p == "/v1/admin/node":
		allow, action = "GET", "node"
	case p == "/v1/admin/drain":
		allow, action = "POST, DELETE", "drain"
	default:
		s.writeError(w, rid, &Error{Code: CodeNotFound, Message: "no such path: " + p})
		return
	}
	if !methodIn(allow, r.Method) {
		s.methodNotAllowed(w, rid, allow)
		return
	}
	if guarded {
		if err := s.adminAccess(r); err != nil {
			s.writeError(w, rid, err)
			return
		}
	}
	var err error
	switch action {
	case "topics":
		err = s.adminTopics(w, r)
	case "topic_delete":
		err = s.adminDeleteTopic(w, r)
	case "disconnect":
		err = s.adminDisconnect(w, r)
	case "node":
		err = s.adminNode(w, r)
	case "drain":
		if r.Method == http.MethodDelete {
			action = "undrain"
		}
		s.SetDraining(r.Method == http.MethodPost)
		writeAdminJSON(w, protocol.AdminDrain{Draining: r.Method == http.MethodPost})
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			s.brokerError(w, r, rid, "admin", err)
			return
		}
		s.writeError(w, rid, e)
		return
	}
	if s.ma.admin != nil {
		s.ma.admin.AdminAction(action)
	}
}

// adminAccess applies AdminHandler's rule: the admin grant under an
// Authenticator, else a loopback client. A credential from a cookie
// changes nothing from another origin: the admin API has no CORS, and a
// browser sends cookies on cross-site requests too.
func (s *Server) adminAccess(r *http.Request) error {
	if s.cfg.auth == nil {
		if a, err := netip.ParseAddr(s.clientIP(r)); err != nil || !a.IsLoopback() {
			return &Error{Code: CodeForbidden, Message: "without authentication the admin API answers loopback clients only"}
		}
		return nil
	}
	pr, err := s.authenticate(r)
	if err != nil {
		return s.unauthenticated(r, err)
	}
	if !pr.Admin {
		return &Error{Code: CodeForbidden, Message: "the admin grant is required"}
	}
	if pr.FromCookie && r.Method != http.MethodGet && !s.sameOrigin(r) {
		return &Error{Code: CodeForbidden, Message: "an admin change with a cookie credential must come from this server's own pages"}
	}
	return nil
}

func writeAdminJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the admin shapes always marshal
		panic(err)
	}
	writeJSON(w, http.StatusOK, b)
}

// adminTopics answers GET /v1/admin/topics.
func (s *Server) adminTopics(w http.ResponseWriter, r *http.Request) error {
	tl, ok := s.broker.(TopicLister)
	if !ok {
		return errNotImplemented("a topic index")
	}
	q := r.URL.Query()
	limit := protocol.DefaultTopicsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return &Error{Code: CodeInvalidParameter, Message: "limit must be a positive integer"}
		}
		limit = min(n, protocol.MaxTopicsLimit)
	}
	prefix, after := q.Get("prefix"), q.Get("after")
	ts, err := tl.Topics(r.Context(), prefix, after, limit+1)
	if err != nil {
		return err
	}
	reply := protocol.AdminTopics{Topics: make([]protocol.AdminTopic, 0, min(len(ts), limit))}
	for i, t := range ts {
		if i == limit {
			reply.Next = ts[i-1].Topic
			break
		}
		at := protocol.AdminTopic{Topic: t.Topic, Head: t.Head, Oldest: t.Oldest, Waiting: s.hub.Waiting(t.Topic),
			Retained: t.Retained, Bytes: t.Bytes}
		if !t.LastPublish.IsZero() {
			lp := t.LastPublish.UTC()
			at.LastPublish = &lp
		}
		reply.Topics = append(reply.Topics, at)
	}
	b, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	s.writeJSONMaybeGzip(w, b, wantsGzip(w, r))
	return nil
}

// adminDeleteTopic answers DELETE /v1/admin/topics/{topic}.
func (s *Server) adminDeleteTopic(w http.ResponseWriter, r *http.Request) error {
	td, ok := s.broker.(TopicDeleter)
	if !ok {
		return errNotImplemented("deletable topics")
	}
	topic, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/admin/topics/"))
	if err != nil {
		return &Error{Code: CodeInvalidTopic, Message: "topic name is not a valid escaped path segment"}
	}
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	deleted, err := td.DeleteTopic(context.WithoutCancel(r.Context()), topic)
	if err != nil {
		return err
	}
	s.log.Info("admin: topic deleted", "topic", topic, "had_log", deleted)
	writeAdminJSON(w, protocol.AdminTopicDeleted{Topic: topic, Deleted: deleted})
	return nil
}

// adminDisconnect answers POST /v1/admin/disconnect.
func (s *Server) adminDisconnect(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.auth == nil {
		return &Error{Code: CodeInvalidParameter, Message: "the server does not authenticate: there is no credential to revoke"}
	}
	raw, e := s.readBody(w, r)
	if e != nil {
		return e
	}
	var body protocol.AdminDisconnect
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || dec.More() {
		return &Error{Code: CodeInvalidBody, Message: `body must be {"sub": "...", "before": "RFC 3339 time"} with before optional`}
	}
	if body.Sub == "" {
		return &Error{Code: CodeInvalidBody, Message: "sub must name a subject"}
	}
	before := time.Now()
	if body.Before != nil {
		before = *body.Before
	}
	before = before.UTC().Truncate(time.Second)
	if err := s.revoke(context.WithoutCancel(r.Context()), body.Sub, before); err != nil {
		return err
	}
	s.log.Info("admin: subject disconnected", "sub", body.Sub, "before", before)
	writeAdminJSON(w, protocol.AdminDisconnect{Sub: body.Sub, Before: &before})
	return nil
}

// adminNode answers GET /v1/admin/node.
func (s *Server) adminNode(w http.ResponseWriter, r *http.Request) error {
	n := s.nodeReport(r.Context())
	if reg, ok := s.broker.(NodeRegistry); ok {
		recs, err := reg.Nodes(r.Context())
		if err != nil {
			return err
		}
		n.Nodes = []protocol.AdminNode{}
		for _, rec := range recs {
			if rec.Node == n.Node {
				continue
			}
			var o protocol.AdminNode
			if json.Unmarshal(rec.Info, &o) != nil {
				o = protocol.AdminNode{}
			}
			o.Node = rec.Node
			seen := rec.Seen.UTC()
			o.Seen = &seen
			o.Nodes = nil
			n.Nodes = append(n.Nodes, o)
		}
	}
	writeAdminJSON(w, n)
	return nil
}

// nodeReport describes this node now.
func (s *Server) nodeReport(ctx context.Context) protocol.AdminNode {
	ni := s.cfg.node
	n := protocol.AdminNode{
		Node: ni.Name, Version: ni.Version, Commit: ni.Commit, Built: ni.Built, Go: runtime.Version(),
		Started: s.started.UTC().Truncate(time.Second), ConfigDigest: ni.ConfigDigest,
		PollsHeld: s.polls.Load(), TopicsWaited: s.hub.Topics(), Draining: s.Draining(),
		Store: protocol.AdminStore{Kind: ni.Store, Ready: true},
	}
	if p, ok := s.broker.(Pinger); ok {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n.Store.Ready = p.Ping(pctx) == nil
		cancel()
	}
	n.Ready = n.Store.Ready && !n.Draining
	return n
}

// Heartbeat tells the store that this node is alive, for ttl, with what
// GET /v1/admin/node says of it; other nodes list it while the ttl runs.
// It does nothing on a store that is not a NodeRegistry. longpoll serve
// calls it every few seconds.
func (s *Server) Heartbeat(ctx context.Context, ttl time.Duration) error {
	reg, ok := s.broker.(NodeRegistry)
	if !ok || s.cfg.node.Name == "" {
		return nil
	}
	info, err := json.Marshal(s.nodeReport(ctx))
	if err != nil {
		return err
	}
	return reg.Heartbeat(ctx, s.cfg.node.Name, info, ttl)
}

var errDrainingNode = &Error{Code: CodeDraining, Message: "this node is draining; poll another node or retry"}

// SetDraining drains the node (true) or ends a drain (false). Draining,
// readiness answers 503, new polls are refused with 503 draining and a
// spread Retry-After, and every held poll is answered at once as at
// shutdown, with its cursor; publishes and everything else still work.
func (s *Server) SetDraining(on bool) {
	if s.drained.Swap(on) == on {
		return
	}
	if on {
		s.log.Info("draining: new polls are refused, held polls answered")
		s.kickHeld()
	} else {
		s.log.Info("drain ended: polls are taken again")
	}
}
