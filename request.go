package longpoll

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/longpoll/longpoll/protocol"

	"github.com/longpoll/longpoll/internal/cursor"
)

// pollRequest is a parsed, validated poll.
type pollRequest struct {
	topics   []string  // distinct, in request order
	one      [1]string // topics' array for a single topic
	cursor   []cursor.Entry
	earliest bool
	since    time.Time     // since=<time>: start at the first message at or after it
	gzip     bool          // the reply may be gzip-compressed
	timeout  time.Duration // already capped at the maximum hold
	limit    int
}

func badParam(msg string) *Error { return &Error{Code: CodeInvalidParameter, Message: msg} }

var (
	errBadTimeout = badParam(`timeout must be a number of seconds ("25", "1.5") or a duration ("25s", "1500ms"), not negative`)
	errBadLimit   = badParam("limit must be a positive whole number")
)

// parsePollQuery reads a GET poll's query string.
func (s *Server) parsePollQuery(rawQuery string) (*pollRequest, *Error) {
	var array [4]string // most polls name a few
	topics, q := parsePollParams(rawQuery, array[:0])
	for i, k := range pollParamNames {
		if q.n[i] > 1 {
			return nil, badParam("parameter " + k + " given more than once")
		}
	}
	var since, timeout, limit *string
	if q.n[paramSince] > 0 {
		since = &q.vals[paramSince]
	}
	if q.n[paramTimeout] > 0 {
		timeout = &q.vals[paramTimeout]
	}
	if q.n[paramLimit] > 0 {
		limit = &q.vals[paramLimit]
	}
	return s.buildPoll(topics, q.vals[paramCursor], since, timeout, limit)
}

// The single-valued parameters of a poll's query.
const (
	paramCursor = iota
	paramSince
	paramTimeout
	paramLimit
)

var pollParamNames = [...]string{"cursor", "since", "timeout", "limit"}

// pollParams are the single-valued parameters of a poll's query string.
type pollParams struct {
	vals [len(pollParamNames)]string // the first value of each
	n    [len(pollParamNames)]int    // how many times each was given
}

// maxQueryParams is net/url's default limit: a query with more pairs
// parses as empty.
const maxQueryParams = 10000

// parsePollParams reads a poll's parameters from a raw query exactly as
// url.ParseQuery would give them (pairs with a semicolon or a bad escape
// are skipped), without building its map: a poll's query is parsed on
// every re-poll. FuzzPollParams holds it to url.ParseQuery.
//
// The topics are appended to topics[:0], which the caller may back with
// an array of its own. They are a result of their own, not a field of
// pollParams, so that escape analysis keeps such an array apart from the
// values, which do escape.
func parsePollParams(raw string, topics []string) ([]string, pollParams) {
	var p pollParams
	if strings.Count(raw, "&")+1 > maxQueryParams {
		return nil, p
	}
	topics = topics[:0]
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" || strings.Contains(kv, ";") {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		if v, err = url.QueryUnescape(v); err != nil {
			continue
		}
		if k == "topic" {
			topics = append(topics, v)
			continue
		}
		if i := slices.Index(pollParamNames[:], k); i >= 0 {
			if p.n[i] == 0 {
				p.vals[i] = v
			}
			p.n[i]++
		}
	}
	return topics, p
}

// pollBody is the JSON body of POST /v1/poll.
type pollBody struct {
	Topics  []string        `json:"topics"`
	Cursor  string          `json:"cursor"`
	Since   *string         `json:"since"`
	Timeout json.RawMessage `json:"timeout"`
	Limit   json.RawMessage `json:"limit"`
}

// parsePollBody reads a POST poll's JSON body.
func (s *Server) parsePollBody(w http.ResponseWriter, r *http.Request) (*pollRequest, *Error) {
	raw, e := s.readBody(w, r)
	if e != nil {
		return nil, e
	}
	var b pollBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, bodyError(err)
	}
	if b.Topics == nil {
		return nil, badParam("topics is required: a list of topic names")
	}
	timeout, ok := jsonParam(b.Timeout)
	if !ok {
		return nil, errBadTimeout
	}
	limit, ok := jsonParam(b.Limit)
	if !ok {
		return nil, errBadLimit
	}
	return s.buildPoll(b.Topics, b.Cursor, b.Since, timeout, limit)
}

// jsonParam returns a JSON number as its text and a JSON string as its
// value: the body form's timeout and limit, like the query form's. nil
// means absent; false, a string that is not valid JSON.
func jsonParam(raw json.RawMessage) (*string, bool) {
	if raw == nil {
		return nil, true
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, false
		}
	}
	return &s, true
}

// buildPoll validates the fields common to both poll forms; timeout and
// limit, when present, are the text of a number (or of a duration).
func (s *Server) buildPoll(topics []string, cur string, since *string, timeout, limit *string) (*pollRequest, *Error) {
	p := &pollRequest{timeout: s.live.Load().defaultTimeout, limit: DefaultPollLimit}
	if len(topics) == 0 {
		return nil, badParam("at least one topic is required")
	}
	// Duplicates are dropped: by a scan for a few topics, by a map beyond.
	var seen map[string]struct{}
	if len(topics) > 8 {
		seen = make(map[string]struct{}, len(topics))
	}
	if len(topics) == 1 {
		p.topics = p.one[:0]
	} else {
		p.topics = make([]string, 0, len(topics))
	}
	for _, t := range topics {
		if seen != nil {
			if _, dup := seen[t]; dup {
				continue
			}
		} else if slices.Contains(p.topics, t) {
			continue
		}
		if err := ValidateTopic(t); err != nil {
			e := err.(*Error)
			return nil, &Error{Code: e.Code, Message: e.Message + ": " + strconv.Quote(truncate(t, 64))}
		}
		if seen != nil {
			seen[t] = struct{}{}
		}
		p.topics = append(p.topics, t)
	}
	if n := s.live.Load().maxTopicsPerPoll; len(p.topics) > n {
		return nil, &Error{Code: CodeTooManyTopics, Message: "a poll may name at most " + strconv.Itoa(n) + " topics"}
	}
	if since != nil {
		if *since == "earliest" {
			p.earliest = true
		} else if t, err := time.Parse(time.RFC3339Nano, *since); err == nil {
			p.since = t
		} else {
			return nil, badParam(`since must be "earliest" or an RFC 3339 time such as "2026-12-05T10:00:00Z" (or absent, to start at the head)`)
		}
	}
	if timeout != nil {
		d, e := parseTimeout(*timeout)
		if e != nil {
			return nil, e
		}
		p.timeout = d
	}
	p.timeout = min(p.timeout, s.cfg.maxHold)
	if limit != nil {
		n, e := parseLimit(*limit)
		if e != nil {
			return nil, e
		}
		p.limit = n
	}
	if cur != "" {
		entries, err := cursor.Decode(cur, func(t string) bool { return ValidateTopic(t) == nil }, p.topics...)
		if err != nil {
			return nil, &Error{Code: CodeInvalidCursor, Message: err.Error() + "; pass back the cursor of the latest reply unchanged, or none to start afresh"}
		}
		p.cursor = entries
	}
	return p, nil
}

// parseTimeout accepts a number of seconds or a Go duration.
func parseTimeout(s string) (time.Duration, *Error) {
	bad := errBadTimeout
	if s == "" || len(s) > 32 {
		return 0, bad
	}
	if d, ok := wholeSeconds(s); ok {
		return d, nil
	}
	return parseDuration(s)
}

// parseDuration is parseTimeout's general case.
func parseDuration(s string) (time.Duration, *Error) {
	bad := errBadTimeout
	var d time.Duration
	// A bare number is seconds; anything ending in a unit is a duration.
	if c := s[len(s)-1]; c >= '0' && c <= '9' || c == '.' {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, bad
		}
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return 0, bad
		}
		if f > 1e6 {
			f = 1e6 // capped to the maximum hold anyway
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return 0, bad
		}
	}
	return d, nil
}

// wholeSeconds reads the usual timeout, a few digits perhaps followed by
// "s", without the float parser or time.ParseDuration's unit table.
func wholeSeconds(s string) (time.Duration, bool) {
	s = strings.TrimSuffix(s, "s")
	if s == "" || len(s) > 6 {
		return 0, false
	}
	n := 0
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = 10*n + int(c-'0')
	}
	return time.Duration(n) * time.Second, true
}

// parseLimit accepts a positive integer; above MaxPollLimit it is capped.
func parseLimit(s string) (int, *Error) {
	bad := errBadLimit
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange && len(s) > 0 && s[0] != '-' {
			return MaxPollLimit, nil
		}
		return 0, bad
	}
	if n <= 0 {
		return 0, bad
	}
	return int(min(n, MaxPollLimit)), nil
}

// readBody checks the Content-Type and reads the body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	// The usual value needs no parsing, which allocates a parameter map.
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if ct == "" || err != nil || mt != "application/json" {
			return nil, &Error{Code: CodeUnsupportedMedia, Message: "request body must be JSON with Content-Type: application/json"}
		}
	}
	maxBody := s.live.Load().maxBodySize
	if r.ContentLength > maxBody {
		return nil, tooLargeBody(maxBody)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLargeBody(maxBody)
		}
		return nil, &Error{Code: CodeInvalidBody, Message: "could not read request body"}
	}
	// encoding/json would quietly replace invalid UTF-8 in strings.
	if !utf8.Valid(raw) {
		return nil, &Error{Code: CodeInvalidBody, Message: "request body must be valid UTF-8"}
	}
	return raw, nil
}

func tooLargeBody(n int64) *Error {
	return &Error{Code: CodeTooLarge, Message: "request body exceeds " + strconv.FormatInt(n, 10) + " bytes"}
}

func bodyError(err error) *Error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &Error{Code: CodeInvalidBody, Message: "request body is not valid JSON: " + se.Error()}
	case errors.As(err, &te):
		if te.Field == "" {
			return &Error{Code: CodeInvalidBody, Message: "request body must be a JSON object"}
		}
		return &Error{Code: CodeInvalidBody, Message: "field " + te.Field + " must be " + kindName(te.Type.String())}
	default:
		return &Error{Code: CodeInvalidBody, Message: "request body is not valid JSON"}
	}
}

func kindName(t string) string {
	switch t {
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	default:
		return "of type " + t
	}
}

// publishItem is one message of a publish body.
type publishItem struct {
	Topic *string         `json:"topic"`
	Data  json.RawMessage `json:"data"`
	ID    *string         `json:"id"`
}

type publishBody struct {
	publishItem
	Messages []publishItem `json:"messages"`
}

// MaxIDLen is the longest idempotency key, in bytes.
const MaxIDLen = protocol.MaxIDLen

// parsePublish reads a publish body into publications, validating every
// item before any is appended.
func (s *Server) parsePublish(raw []byte) ([]Publication, *Error) {
	var b publishBody
	if it, ok := plainPublish(raw); ok {
		b.publishItem = it
	} else if err := json.Unmarshal(raw, &b); err != nil {
		return nil, bodyError(err)
	}
	var items []publishItem
	switch {
	case b.Messages != nil && (b.Topic != nil || b.Data != nil || b.ID != nil):
		return nil, &Error{Code: CodeInvalidBody, Message: `give either "messages" or a single "topic" and "data", not both`}
	case b.Messages != nil:
		if len(b.Messages) == 0 {
			return nil, &Error{Code: CodeInvalidBody, Message: `"messages" must hold at least one message`}
		}
		if n := s.live.Load().maxBatch; len(b.Messages) > n {
			return nil, &Error{Code: CodeTooLarge, Message: "a batch may hold at most " + strconv.Itoa(n) + " messages"}
		}
		items = b.Messages
	default:
		items = []publishItem{b.publishItem}
	}
	pubs := make([]Publication, len(items))
	for i, it := range items {
		where := ""
		if b.Messages != nil {
			where = "messages[" + strconv.Itoa(i) + "]: "
		}
		if it.Topic == nil {
			return nil, &Error{Code: CodeInvalidTopic, Message: where + "topic is required"}
		}
		if it.Data == nil {
			return nil, &Error{Code: CodeInvalidBody, Message: where + "data is required (any JSON value, null included)"}
		}
		p := Publication{Topic: *it.Topic, Data: it.Data}
		if it.ID != nil {
			p.ID = *it.ID
		}
		if err := s.validatePublication(&p, false); err != nil {
			return nil, &Error{Code: err.Code, Message: where + err.Message}
		}
		pubs[i] = p
	}
	return pubs, nil
}

// validatePublication checks p and compacts its data in place.
func (s *Server) validatePublication(p *Publication, allowReserved bool) *Error {
	if err := ValidateTopic(p.Topic); err != nil {
		e := err.(*Error)
		return &Error{Code: e.Code, Message: e.Message + ": " + strconv.Quote(truncate(p.Topic, 64))}
	}
	if !allowReserved && Reserved(p.Topic) {
		return &Error{Code: CodeReservedTopic, Message: "topics starting with " + ReservedPrefix + " are reserved for the server"}
	}
	if len(p.ID) > MaxIDLen || !utf8.ValidString(p.ID) || strings.ContainsFunc(p.ID, unicode.IsControl) {
		return &Error{Code: CodeInvalidBody, Message: "id must be valid UTF-8 of at most " + strconv.Itoa(MaxIDLen) + " bytes, without control characters"}
	}
	if !utf8.Valid(p.Data) {
		return &Error{Code: CodeInvalidBody, Message: "data must be valid UTF-8"}
	}
	var c bytes.Buffer
	c.Grow(len(p.Data))
	if err := json.Compact(&c, p.Data); err != nil {
		return &Error{Code: CodeInvalidBody, Message: "data must be one JSON value"}
	}
	if n := s.live.Load().maxMessageSize; c.Len() > n {
		return &Error{Code: CodeTooLarge, Message: "data exceeds " + strconv.Itoa(n) + " bytes of JSON"}
	}
	p.Data = c.Bytes()
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// plainPublish reads the usual publish body, one object with "topic",
// "data" and perhaps "id", as json.Unmarshal would into a publishBody,
// without its reflection. It takes only what it can read exactly: the
// keys spelled so, each once, and topic and id strings of printable ASCII
// with no escapes; anything else (ok false) goes to json.Unmarshal.
// FuzzPlainPublish holds it to json.Unmarshal.
func plainPublish(raw []byte) (it publishItem, ok bool) {
	if !json.Valid(raw) {
		return it, false
	}
	// raw is one valid JSON value from here on.
	i := skipSpace(raw, 0)
	if raw[i] != '{' {
		return it, false
	}
	i = skipSpace(raw, i+1)
	if raw[i] == '}' {
		return it, false
	}
	for {
		// A key: a string, then a colon.
		end := plainString(raw, i)
		if end < 0 {
			return it, false
		}
		key := raw[i+1 : end-1]
		i = skipSpace(raw, end)
		i = skipSpace(raw, i+1) // the colon
		switch string(key) {
		case "topic", "id":
			end = plainString(raw, i)
			if end < 0 {
				return it, false
			}
			v := string(raw[i+1 : end-1])
			p := &it.Topic
			if key[0] == 'i' {
				p = &it.ID
			}
			if *p != nil {
				return it, false // given twice: json.Unmarshal keeps the last
			}
			*p = &v
		case "data":
			if it.Data != nil {
				return it, false
			}
			end = skipValue(raw, i)
			it.Data = raw[i:end:end]
		default:
			return it, false
		}
		i = skipSpace(raw, end)
		if raw[i] == '}' {
			return it, true
		}
		i = skipSpace(raw, i+1) // the comma
	}
}

// skipSpace returns the index of the first byte at or after i that is
// not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString returns the index just past the string at b[i] if it is
// one of printable ASCII with no escapes, else -1.
func plainString(b []byte, i int) int {
	if b[i] != '"' {
		return -1
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1
		case c == '\\' || c < ' ' || c > '~':
			return -1
		}
	}
	return -1
}

// skipValue returns the index just past the valid JSON value at b[i].
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the enclosing object's end
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r', ':':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}
