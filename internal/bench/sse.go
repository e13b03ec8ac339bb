package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Transports the subscribers use.
const (
	// TransportPoll: each subscriber long-polls, one request per reply.
	TransportPoll = "poll"
	// TransportSSE: each subscriber holds one stream of server-sent
	// events: GET /v1/stream on longpoll, Nchan's EventSource subscriber
	// (GET /es/<channel>, bench/nchan/nginx.conf) on Nchan. It resumes
	// from the last event's id when the server ends the stream.
	TransportSSE = "sse"
)

// streamRequest appends the request that opens a subscriber's stream.
func (t *target) streamRequest(buf []byte, topic string, st *subState) []byte {
	buf = append(buf, "GET "...)
	buf = append(buf, t.base.Path...)
	switch t.protocol {
	case ProtocolLongpoll:
		buf = append(buf, "/v1/stream?topic="...)
		buf = append(buf, url.QueryEscape(topic)...)
	case ProtocolNchan:
		buf = append(buf, "/es/"...)
		buf = append(buf, url.PathEscape(topic)...)
	}
	buf = t.appendHeadStart(buf, st)
	buf = append(buf, "Accept: text/event-stream\r\n"...)
	if st.cursor != "" {
		buf = append(buf, "Last-Event-ID: "...)
		buf = append(buf, st.cursor...)
		buf = append(buf, "\r\n"...)
	}
	return append(buf, "\r\n"...)
}

// eventPayload returns the payload of a message event's data: on
// longpoll the message object, whose "data" is the payload; on Nchan
// the payload itself.
func (t *target) eventPayload(data []byte) (payload, error) {
	if t.protocol == ProtocolLongpoll {
		i := bytes.LastIndex(data, []byte(`"data":`))
		if i < 0 {
			return payload{}, fmt.Errorf("message event without data: %.100q", data)
		}
		data = data[i+len(`"data":`):]
		data = bytes.TrimSuffix(data, []byte("}"))
	}
	if p, ok := scanPayload(data); ok {
		return p, nil
	}
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("message event: %w", err)
	}
	return p, nil
}

// runSSE is run for a subscriber on TransportSSE: it opens its stream,
// reads its events until the server ends it, and opens it again from the
// last event's id.
func (s *subscriber) runSSE(ctx context.Context) {
	ws := s.ws
	topic := ws.job.Topics[s.topicIdx]
	target := ws.targets[s.serverIdx]
	var backoff time.Duration
	var req []byte
	for ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		c, err := s.dial(ctx, target)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = nextBackoff(backoff)
			continue
		}
		ws.open.Add(1)
		var once sync.Once
		closeConn := func() {
			once.Do(func() {
				c.Close()
				ws.open.Add(^uint64(0))
			})
		}
		stop := context.AfterFunc(ctx, closeConn)
		str, err := newStream(c)
		if err == nil {
			req = target.streamRequest(req[:0], topic, &s.st)
			ws.polls.Add(1)
			err = str.send(req)
		}
		if err == nil {
			err = s.readEvents(str, target)
		}
		stop()
		closeConn()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			ws.fail(err)
			backoff = nextBackoff(max(backoff, 250*time.Millisecond))
		default:
			backoff = 0
		}
	}
}

// readEvents reads one stream's reply: its head, then its events, until
// it ends (nil) or fails.
func (s *subscriber) readEvents(str stream, target *target) error {
	ws := s.ws
	br := bufio.NewReaderSize(str, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stream: status %d", resp.StatusCode)
	}
	body := bufio.NewReaderSize(resp.Body, 64<<10)
	var name, id, data []byte
	for {
		line, err := body.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("stream: %w", err)
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) > 0 {
			k, v, _ := bytes.Cut(line, []byte(":"))
			v = bytes.TrimPrefix(v, []byte(" "))
			switch string(k) {
			case "event":
				name = append(name[:0], v...)
			case "id":
				id = append(id[:0], v...)
			case "data":
				data = append(data[:0], v...)
			}
			continue
		}
		// The blank line ends an event.
		now := time.Now()
		arrived, atSocket := str.arrived()
		ev := string(name)
		name = name[:0]
		if len(data) == 0 {
			continue
		}
		switch ev {
		case "", "message":
		case "gap":
			s.st.cursor = string(id)
			ws.mu.Lock()
			ws.gaps++
			ws.mu.Unlock()
			data = data[:0]
			continue
		case "error":
			return fmt.Errorf("stream: error event %s", data)
		default: // close
			data = data[:0]
			continue
		}
		p, err := target.eventPayload(data)
		data = data[:0]
		if err != nil {
			return err
		}
		s.st.cursor = string(id)
		ws.received.Add(1)
		ws.receivedBy[s.serverIdx].Add(1)
		ws.mu.Lock()
		ws.recordLocked(p, now, arrived, atSocket)
		ws.mu.Unlock()
		s.seq.Observe(p.N)
	}
}
