package longpoll

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

func (s *Server) servePublish(w http.ResponseWriter, r *http.Request, rid string, pr *Principal) {
	// A browser attaches cookies to cross-site requests: a cookie alone
	// must not let another site publish.
	if pr != nil && pr.FromCookie && !s.live.Load().corsOrigins[r.Header.Get("Origin")] && !s.sameOrigin(r) {
		s.writeError(w, rid, &Error{Code: CodeForbidden, Message: "a publish authorized by a cookie must come from an allowed origin; send the token in the Authorization header"})
		return
	}
	raw, e := s.readBody(w, r)
	if e != nil {
		s.writeError(w, rid, e)
		return
	}
	pubs, e := s.parsePublish(raw)
	if e != nil {
		s.writeError(w, rid, e)
		return
	}
	for i := range pubs {
		if !canPublish(pr, pubs[i].Topic) {
			s.writeError(w, rid, forbidden(pubs[i].Topic))
			return
		}
		pubs[i].ID = scopeID(pr, pubs[i].ID)
	}
	if ok, retry := s.limitPublish(r, pr); !ok {
		s.writeError(w, rid, &Error{Code: CodeRateLimited, Message: "too many publishes from this client; retry later", RetryAfter: retry})
		return
	}
	if !s.enter() {
		s.writeError(w, rid, &Error{Code: CodeShuttingDown, Message: "server is shutting down; publish to another node or retry"})
		return
	}
	defer s.leave()
	// A publish in flight finishes even if the client leaves: detach it
	// from the request's cancellation so it is all or nothing.
	receipts, err := s.append(context.WithoutCancel(r.Context()), pubs)
	if err != nil {
		s.brokerError(w, r, rid, "append", err)
		return
	}
	buf := make([]byte, 0, 16+len(receipts)*48)
	buf = append(buf, `{"messages":[`...)
	for i, rc := range receipts {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"topic":"`...)
		buf = append(buf, rc.Topic...)
		buf = append(buf, `","seq":`...)
		buf = strconv.AppendUint(buf, rc.Seq, 10)
		if rc.Duplicate {
			buf = append(buf, `,"duplicate":true`...)
		}
		buf = append(buf, '}')
	}
	buf = append(buf, "]}"...)
	s.writeJSONMaybeGzip(w, buf, wantsGzip(w, r))
}

func (s *Server) append(ctx context.Context, pubs []Publication) ([]Receipt, error) {
	receipts, err := s.broker.Append(ctx, pubs)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, rc := range receipts {
		if !rc.Duplicate {
			n++
		}
	}
	s.m.Published(n)
	return receipts, nil
}

// Publish appends messages from Go code, as POST /v1/publish does, all or
// nothing. Unlike clients, Go code may publish to the reserved _longpoll.
// topics. Each Publication's Data must be one JSON value; it is compacted.
func (s *Server) Publish(ctx context.Context, pubs ...Publication) ([]Receipt, error) {
	if len(pubs) == 0 {
		return nil, nil
	}
	checked := make([]Publication, len(pubs))
	for i, p := range pubs {
		if e := s.validatePublication(&p, true); e != nil {
			return nil, e
		}
		checked[i] = p
	}
	return s.append(ctx, checked)
}

// limitPublish takes a publish token from the client's bucket, when
// per-client limits are on.
func (s *Server) limitPublish(r *http.Request, pr *Principal) (bool, time.Duration) {
	if s.cfg.limits.PublishesPerSecond <= 0 {
		return true, 0
	}
	return s.limit.Publish(s.clientID(r, pr))
}
