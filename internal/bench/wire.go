package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"strconv"
)

// The subscribers read replies with this lean HTTP/1.1 reader rather than
// net/http's, and the bench's own messages with a scanner rather than
// encoding/json: thousands of subscribers share one CPU in a worker, and
// the load generator must cost less than the server it measures.

// reply is one HTTP response as a subscriber needs it.
type reply struct {
	status             int
	close              bool
	lastModified, etag string
	body               []byte // valid until the next read into the same reply
}

var errMalformed = errors.New("malformed HTTP response")

// readReply reads one response from br into r, reusing r.body.
func readReply(br *bufio.Reader, r *reply) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return errMalformed
	}
	st, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return errMalformed
	}
	r.status, r.close, r.lastModified, r.etag = st, line[7] == '0', "", ""
	length, chunked := -1, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return errMalformed
		}
		v = bytes.TrimSpace(v)
		switch {
		case equalFold(k, "Content-Length"):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 {
				return errMalformed
			}
		case equalFold(k, "Transfer-Encoding"):
			chunked = equalFold(v, "chunked")
		case equalFold(k, "Connection"):
			if equalFold(v, "close") {
				r.close = true
			}
		case equalFold(k, "Last-Modified"):
			r.lastModified = string(v)
		case equalFold(k, "Etag"):
			r.etag = string(v)
		}
	}
	r.body = r.body[:0]
	switch {
	case st == 204 || st == 304 || st/100 == 1:
	case chunked:
		b, err := io.ReadAll(io.LimitReader(httputil.NewChunkedReader(br), 64<<20))
		if err != nil {
			return err
		}
		r.body = append(r.body, b...)
	case length >= 0:
		if length > 64<<20 {
			return errMalformed
		}
		if cap(r.body) < length {
			r.body = make([]byte, length)
		}
		r.body = r.body[:length]
		if _, err := io.ReadFull(br, r.body); err != nil {
			return err
		}
	default: // until the connection closes
		b, err := io.ReadAll(io.LimitReader(br, 64<<20))
		if err != nil {
			return err
		}
		r.body = append(r.body, b...)
		r.close = true
	}
	return nil
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i]|0x20, s[i]|0x20
		if c != d {
			return false
		}
	}
	return true
}

// scanPayload parses a payload as encodePayload writes it:
// {"n":N,"t":T...}. It reports false for anything else.
func scanPayload(b []byte) (payload, bool) {
	var p payload
	rest, ok := bytes.CutPrefix(b, []byte(`{"n":`))
	if !ok {
		return p, false
	}
	n, rest, ok := scanUint(rest)
	if !ok {
		return p, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"t":`)); !ok {
		return p, false
	}
	t, _, ok := scanUint(rest)
	if !ok {
		return p, false
	}
	p.N, p.T = n, int64(t)
	return p, true
}

func scanUint(b []byte) (uint64, []byte, bool) {
	i := 0
	var v uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 19 {
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	return v, b[i:], i > 0
}

// scanPollReply reads a longpoll poll reply that carries only the bench's
// own messages, as the server writes it (docs/protocol.md): the payloads,
// the cursor and the number of gaps. It reports false when the reply is
// not of that shape; the caller then decodes it with encoding/json.
func scanPollReply(body []byte, ps []payload) ([]payload, string, int, bool) {
	rest, ok := bytes.CutPrefix(body, []byte(`{"messages":[`))
	if !ok {
		return ps, "", 0, false
	}
	dataKey := []byte(`,"data":`)
	for len(rest) > 0 && rest[0] == '{' {
		i := bytes.Index(rest, dataKey)
		if i < 0 {
			return ps, "", 0, false
		}
		rest = rest[i+len(dataKey):]
		p, ok := scanPayload(rest)
		if !ok {
			return ps, "", 0, false
		}
		ps = append(ps, p)
		// The payload has no nested object: it ends at its '}', and the
		// message at the next one.
		end := bytes.Index(rest, []byte("}}"))
		if end < 0 {
			return ps, "", 0, false
		}
		rest = rest[end+2:]
		if len(rest) > 0 && rest[0] == ',' {
			rest = rest[1:]
		}
	}
	rest, ok = bytes.CutPrefix(rest, []byte(`],"cursor":"`))
	if !ok {
		return ps, "", 0, false
	}
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return ps, "", 0, false
	}
	cursor := string(rest[:end])
	rest = rest[end:]
	i := bytes.Index(rest, []byte(`"gaps":[`))
	if i < 0 {
		return ps, "", 0, false
	}
	gaps := 0
	if rest = rest[i+8:]; len(rest) > 0 && rest[0] != ']' {
		gaps = bytes.Count(rest, []byte(`"reason":`))
	}
	return ps, cursor, gaps, true
}

func statusError(what string, r *reply) error {
	return fmt.Errorf("%s: HTTP %d: %.200s", what, r.status, r.body)
}
