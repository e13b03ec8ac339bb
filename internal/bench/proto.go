package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Protocols the bench speaks.
const (
	// ProtocolLongpoll is longpoll's own: GET /v1/poll with a cursor,
	// POST /v1/publish, GET /v1/topics/{topic} for the waiting count.
	ProtocolLongpoll = "longpoll"
	// ProtocolNchan is Nchan's long-poll subscriber, GET /sub/<channel>
	// with If-Modified-Since and If-None-Match taken from the Last-Modified
	// and Etag of the previous reply, and its publisher, POST
	// /pub/<channel>, whose GET with Accept: text/json gives the number of
	// subscribers (bench/nchan/nginx.conf).
	ProtocolNchan = "nchan"
)

// payload is the data of every message the bench publishes: its number on
// its topic and the wall-clock time it was sent.
type payload struct {
	N   uint64 `json:"n"`
	T   int64  `json:"t"` // Unix nanoseconds
	Pad string `json:"p,omitempty"`
}

func encodePayload(n uint64, t time.Time, pad string) []byte {
	b := make([]byte, 0, 48+len(pad))
	b = append(b, `{"n":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	if pad != "" {
		b = append(b, `,"p":"`...)
		b = append(b, pad...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// subState is where one subscriber is in its topic.
type subState struct {
	cursor             string // longpoll
	lastModified, etag string // nchan
	auth               string // "Authorization: Bearer <token>\r\n", or ""
}

// authLine is the header line that carries tok, or "" without one.
func authLine(tok string) string {
	if tok == "" {
		return ""
	}
	return "Authorization: Bearer " + tok + "\r\n"
}

// target is a server and the protocol to speak to it.
type target struct {
	protocol string
	base     *url.URL // scheme, host, path prefix without a trailing /
	http     *http.Client
	hold     time.Duration
	token    string // bearer token of publishes and topic info; "" for none
}

func newTarget(protocol, server string, hold time.Duration, conns int) (*target, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("--server must be an http:// URL, not %q", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	return &target{protocol: protocol, base: u, hold: hold, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

func (t *target) close() { t.http.CloseIdleConnections() }

func (t *target) url(path string) string {
	return t.base.Scheme + "://" + t.base.Host + t.base.Path + path
}

// pollRequest appends a subscriber's next request to buf.
func (t *target) pollRequest(buf []byte, topic string, st *subState) []byte {
	buf = append(buf, "GET "...)
	buf = append(buf, t.base.Path...)
	switch t.protocol {
	case ProtocolLongpoll:
		buf = append(buf, "/v1/poll?topic="...)
		buf = append(buf, url.QueryEscape(topic)...)
		buf = append(buf, "&timeout="...)
		buf = append(buf, t.hold.String()...)
		if st.cursor != "" {
			buf = append(buf, "&cursor="...)
			buf = append(buf, st.cursor...)
		}
	case ProtocolNchan:
		buf = append(buf, "/sub/"...)
		buf = append(buf, url.PathEscape(topic)...)
	}
	buf = t.appendHeadStart(buf, st)
	if st.lastModified != "" {
		buf = append(buf, "If-Modified-Since: "...)
		buf = append(buf, st.lastModified...)
		buf = append(buf, "\r\n"...)
	}
	if st.etag != "" {
		buf = append(buf, "If-None-Match: "...)
		buf = append(buf, st.etag...)
		buf = append(buf, "\r\n"...)
	}
	return append(buf, "\r\n"...)
}

// appendHeadStart appends what follows a subscriber's request target:
// the protocol version, then Host, User-Agent and its credential lines.
func (t *target) appendHeadStart(buf []byte, st *subState) []byte {
	buf = append(buf, " HTTP/1.1\r\nHost: "...)
	buf = append(buf, t.base.Host...)
	buf = append(buf, "\r\nUser-Agent: longpoll-bench\r\n"...)
	return append(buf, st.auth...)
}

// errRetry marks a reply that asks the subscriber to wait and try again.
var errRetry = errors.New("server asked to retry later")

// pollReply is the part of a longpoll poll reply the bench reads.
type pollReply struct {
	Messages []struct {
		Data json.RawMessage `json:"data"`
	} `json:"messages"`
	Cursor string            `json:"cursor"`
	Gaps   []json.RawMessage `json:"gaps"`
}

// parseReply returns the payloads of a subscriber's reply, appended to
// ps[:0], and the number of gaps it reports, and moves st past them.
func (t *target) parseReply(r *reply, st *subState, ps []payload) ([]payload, int, error) {
	ps = ps[:0]
	switch t.protocol {
	case ProtocolLongpoll:
		switch {
		case r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable:
			return ps, 0, fmt.Errorf("%w: %w", errRetry, statusError("poll", r))
		case r.status != http.StatusOK:
			return ps, 0, statusError("poll", r)
		}
		if out, cursor, gaps, ok := scanPollReply(r.body, ps); ok {
			st.cursor = cursor
			return out, gaps, nil
		}
		var pr pollReply
		if err := json.Unmarshal(r.body, &pr); err != nil {
			return ps, 0, fmt.Errorf("poll reply: %w", err)
		}
		if pr.Cursor == "" {
			return ps, 0, errors.New("poll reply without a cursor")
		}
		st.cursor = pr.Cursor
		for _, m := range pr.Messages {
			var p payload
			if err := json.Unmarshal(m.Data, &p); err != nil {
				return ps, 0, fmt.Errorf("message data: %w", err)
			}
			ps = append(ps, p)
		}
		return ps, len(pr.Gaps), nil
	default: // nchan
		switch r.status {
		case http.StatusOK:
		case http.StatusNotModified, http.StatusRequestTimeout:
			return ps, 0, nil // the hold ended with nothing
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			return ps, 0, fmt.Errorf("%w: %w", errRetry, statusError("subscribe", r))
		default:
			return ps, 0, statusError("subscribe", r)
		}
		st.lastModified, st.etag = r.lastModified, r.etag
		p, ok := scanPayload(r.body)
		if !ok {
			if err := json.Unmarshal(r.body, &p); err != nil {
				return ps, 0, fmt.Errorf("message: %w", err)
			}
		}
		return append(ps, p), 0, nil
	}
}

// publish sends one message to topic.
func (t *target) publish(ctx context.Context, topic string, data []byte) error {
	var u string
	var body []byte
	switch t.protocol {
	case ProtocolLongpoll:
		u = t.url("/v1/publish")
		body = make([]byte, 0, len(topic)+len(data)+24)
		body = append(body, `{"topic":`...)
		body = strconv.AppendQuote(body, topic)
		body = append(body, `,"data":`...)
		body = append(body, data...)
		body = append(body, '}')
	default:
		u = t.url("/pub/" + url.PathEscape(topic))
		body = data
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	t.authorize(req)
	resp, err := t.http.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("publish: %s: %.200s", resp.Status, b)
	}
	return nil
}

func (t *target) authorize(req *http.Request) {
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
}

// waiting returns the number of polls the server holds on topic.
func (t *target) waiting(ctx context.Context, topic string) (int, error) {
	var u string
	switch t.protocol {
	case ProtocolLongpoll:
		u = t.url("/v1/topics/" + url.PathEscape(topic))
	default:
		u = t.url("/pub/" + url.PathEscape(topic))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/json")
	t.authorize(req)
	resp, err := t.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if t.protocol == ProtocolNchan && resp.StatusCode == http.StatusNotFound {
		return 0, nil // no such channel yet
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("topic info: %s: %.200s", resp.Status, b)
	}
	var info struct {
		Waiting     *int `json:"waiting"`     // longpoll
		Subscribers *int `json:"subscribers"` // nchan
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return 0, fmt.Errorf("topic info: %w", err)
	}
	switch {
	case info.Waiting != nil:
		return *info.Waiting, nil
	case info.Subscribers != nil:
		return *info.Subscribers, nil
	}
	return 0, fmt.Errorf("topic info without a waiting count: %.200s", b)
}

// readyURL answers once the server accepts requests.
func (t *target) readyURL() string {
	if t.protocol == ProtocolLongpoll {
		return t.url("/healthz")
	}
	return t.url("/pub/bench-ready")
}
