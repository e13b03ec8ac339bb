package jetstream

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/longpoll/longpoll/protocol"
)

// A topic's name becomes one subject token by turning each '.' (the
// subject separator) into '='. Every other byte a topic may hold
// (protocol.ValidateTopic: A-Z a-z 0-9 _ : @ / -) is a valid token byte
// as it is, and '=' is not a topic byte, so the mapping is one to one:
// DecodeTopic(EncodeTopic(t)) == t for every valid t, and a token that
// DecodeTopic accepts is the encoding of exactly one topic.

// EncodeTopic returns the subject token of a valid topic name.
func EncodeTopic(topic string) string { return strings.ReplaceAll(topic, ".", "=") }

// DecodeTopic returns the topic name of a subject token made by
// EncodeTopic, or an error for any other token.
func DecodeTopic(token string) (string, error) {
	if strings.Contains(token, ".") {
		return "", fmt.Errorf("subject token %q: holds a '.'", token)
	}
	topic := strings.ReplaceAll(token, "=", ".")
	if err := protocol.ValidateTopic(topic); err != nil {
		return "", fmt.Errorf("subject token %q: %w", token, err)
	}
	return topic, nil
}

// validToken reports whether s is one non-wildcard subject token: not
// empty, without '.', whitespace, or a lone '*' or '>'.
func validToken(s string) bool {
	if s == "" || s == "*" || s == ">" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// validName reports whether s may name a stream (and, with a suffix, a
// key-value bucket): A-Z a-z 0-9 _ -, at most 32 bytes.
func validName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// storeURL is a parsed --store URL:
//
//	nats://[user:pass@]host:port[,host:port...][?replicas=N&stream=NAME&prefix=P]
//	tls://...   (the same over TLS)
type storeURL struct {
	TLS        bool
	User, Pass string
	HasUser    bool
	Hosts      []string // host:port
	Replicas   int      // 0: chosen at connect
	Stream     string
	Prefix     string
}

// ParseURL parses a store URL as Open does, and returns it with the
// password masked, for a description of the configuration.
func ParseURL(raw string) (redacted string, err error) {
	u, err := parseURL(raw)
	if err != nil {
		return "", err
	}
	return u.Redacted(), nil
}

func parseURL(raw string) (storeURL, error) {
	var u storeURL
	rest, ok := strings.CutPrefix(raw, "nats://")
	if !ok {
		if rest, ok = strings.CutPrefix(raw, "tls://"); !ok {
			return u, errors.New("the scheme must be nats:// or tls://")
		}
		u.TLS = true
	}
	authority, query, _ := strings.Cut(rest, "?")
	if i := strings.IndexAny(authority, "/#"); i >= 0 {
		if authority[i:] != "/" {
			return u, errors.New("a path or fragment is not allowed; use ?stream= and ?prefix=")
		}
		authority = authority[:i]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		info := authority[:i]
		authority = authority[i+1:]
		user, pass, _ := strings.Cut(info, ":")
		var err1, err2 error
		u.User, err1 = url.PathUnescape(user)
		u.Pass, err2 = url.PathUnescape(pass)
		if err1 != nil || err2 != nil {
			return u, errors.New("malformed escape in the user or password")
		}
		u.HasUser = true
	}
	if authority == "" {
		return u, errors.New("no host")
	}
	for h := range strings.SplitSeq(authority, ",") {
		host, port := h, ""
		if strings.HasPrefix(h, "[") {
			end := strings.IndexByte(h, ']')
			if end < 0 {
				return u, fmt.Errorf("host %q: unclosed [", h)
			}
			host = h[:end+1]
			if r := h[end+1:]; r != "" {
				var ok bool
				if port, ok = strings.CutPrefix(r, ":"); !ok {
					return u, fmt.Errorf("host %q: junk after ]", h)
				}
			}
			if len(host) < 3 || strings.ContainsAny(host[1:len(host)-1], "[] /\\@?#") {
				return u, fmt.Errorf("host %q: malformed", h)
			}
		} else {
			if i := strings.IndexByte(h, ':'); i >= 0 {
				host, port = h[:i], h[i+1:]
			}
			if host == "" || strings.ContainsAny(host, "[]: /\\@?#%") {
				return u, fmt.Errorf("host %q: malformed", h)
			}
		}
		if port == "" {
			port = "4222"
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return u, fmt.Errorf("host %q: the port must be 1 to 65535", h)
		}
		u.Hosts = append(u.Hosts, host+":"+strconv.FormatUint(n, 10))
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return u, fmt.Errorf("query: %w", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return u, fmt.Errorf("%s is given %d times", k, len(v))
		}
		switch k {
		case "replicas":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > 5 {
				return u, fmt.Errorf("replicas=%q: want 1 to 5", v[0])
			}
			u.Replicas = n
		case "stream":
			if !validName(v[0]) {
				return u, fmt.Errorf("stream=%q: want 1 to 32 of A-Z a-z 0-9 _ -", v[0])
			}
			u.Stream = v[0]
		case "prefix":
			for tok := range strings.SplitSeq(v[0], ".") {
				if !validToken(tok) {
					return u, fmt.Errorf("prefix=%q: want a subject without wildcards, spaces or empty tokens", v[0])
				}
			}
			u.Prefix = v[0]
		default:
			return u, fmt.Errorf("unknown option %q (want replicas, stream or prefix)", k)
		}
	}
	return u, nil
}

// servers returns the URLs nats.Connect takes, without credentials.
func (u storeURL) servers() []string {
	scheme := "nats://"
	if u.TLS {
		scheme = "tls://"
	}
	out := make([]string, len(u.Hosts))
	for i, h := range u.Hosts {
		out[i] = scheme + h
	}
	return out
}

// Redacted is the URL with the password masked.
func (u storeURL) Redacted() string {
	var b strings.Builder
	if u.TLS {
		b.WriteString("tls://")
	} else {
		b.WriteString("nats://")
	}
	if u.HasUser {
		b.WriteString(url.PathEscape(u.User))
		if u.Pass != "" {
			b.WriteString(":xxxxx")
		}
		b.WriteByte('@')
	}
	b.WriteString(strings.Join(u.Hosts, ","))
	q := url.Values{}
	if u.Replicas != 0 {
		q.Set("replicas", strconv.Itoa(u.Replicas))
	}
	if u.Stream != "" {
		q.Set("stream", u.Stream)
	}
	if u.Prefix != "" {
		q.Set("prefix", u.Prefix)
	}
	if len(q) > 0 {
		b.WriteByte('?')
		b.WriteString(q.Encode())
	}
	return b.String()
}
