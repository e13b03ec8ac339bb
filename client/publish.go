package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/longpoll/longpoll/protocol"
)

// Publication is one message to publish.
type Publication struct {
	Topic string
	// Data is encoded with encoding/json; a json.RawMessage is sent as the
	// JSON text it holds (which must be valid). Note that a []byte is
	// encoded as a base64 string, as encoding/json does.
	Data any
	// ID is the idempotency key: a second publication with the same ID on
	// the same topic, while the first is retained, is not appended again.
	// "" makes the Client choose a random one, so that its own retries
	// never duplicate the message.
	ID string
}

// Receipt tells where a message was appended.
type Receipt struct {
	Topic string
	Seq   uint64
	// ID is the idempotency key sent: the caller's, or the one the Client
	// chose.
	ID string
	// Duplicate reports that the server already had a message with this
	// ID and appended nothing; Seq is the original's. It is also true when
	// an earlier attempt of the same call got through but its answer was
	// lost.
	Duplicate bool
}

// PublishOption configures one Publish.
type PublishOption func(*Publication)

// WithID sets the message's idempotency key (at most 256 bytes). Give the
// same ID when publishing the same message again, from this process or
// another, and it is appended once.
func WithID(id string) PublishOption { return func(p *Publication) { p.ID = id } }

// Publish appends one message to topic and returns where it went. See
// PublishBatch for the retries.
func (c *Client) Publish(ctx context.Context, topic string, data any, opts ...PublishOption) (Receipt, error) {
	p := Publication{Topic: topic, Data: data}
	for _, o := range opts {
		o(&p)
	}
	rs, err := c.publish(ctx, []Publication{p}, false)
	if err != nil {
		return Receipt{}, err
	}
	return rs[0], nil
}

// PublishBatch appends pubs, in order, all or nothing (at most the
// server's --max-batch, 1000 by default), and returns one Receipt per
// Publication.
//
// Failures that may pass (network errors, 5xx, 429, 408) are retried with
// backoff, honouring Retry-After, until ctx ends or the Client is closed;
// every attempt carries the same IDs, so a retry never appends a message
// twice. Other answers fail at once with an *Error. Give ctx a deadline to
// bound the retrying.
func (c *Client) PublishBatch(ctx context.Context, pubs []Publication) ([]Receipt, error) {
	if len(pubs) == 0 {
		return nil, nil
	}
	return c.publish(ctx, pubs, true)
}

func (c *Client) publish(ctx context.Context, pubs []Publication, batch bool) ([]Receipt, error) {
	if c.life.Err() != nil {
		return nil, ErrClosed
	}
	wire := make([]protocol.PublishItem, len(pubs))
	for i, p := range pubs {
		if err := protocol.ValidateTopic(p.Topic); err != nil {
			return nil, fmt.Errorf("client: publish: topic %q: %w", p.Topic, err)
		}
		if len(p.ID) > protocol.MaxIDLen {
			return nil, fmt.Errorf("client: publish: id of %d bytes: at most %d", len(p.ID), protocol.MaxIDLen)
		}
		data, err := marshal(p.Data)
		if err != nil {
			return nil, fmt.Errorf("client: publish to %s: data: %w", p.Topic, err)
		}
		id := p.ID
		if id == "" {
			id = rand.Text()
		}
		wire[i] = protocol.PublishItem{Topic: p.Topic, Data: data, ID: id}
	}
	var body []byte
	var err error
	if batch {
		body, err = marshal(protocol.PublishBatch{Messages: wire})
	} else {
		body, err = marshal(&wire[0])
	}
	if err != nil {
		return nil, fmt.Errorf("client: publish: %w", err)
	}

	ctx, cancel := c.scope(ctx)
	defer cancel()
	bo := c.newBackoff()
	for {
		rs, err := c.publishOnce(ctx, body, wire)
		if err == nil {
			return rs, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("client: publish: %w (last attempt: %v)", stopErr(ctx), err)
		}
		if !c.retryable(err) {
			return nil, fmt.Errorf("client: publish: %w", err)
		}
		wait := bo.next(retryAfter(err))
		c.log.retry(ctx, "publish failed; retrying", err, wait)
		if sleep(ctx, wait) != nil {
			return nil, fmt.Errorf("client: publish: %w (last attempt: %v)", stopErr(ctx), err)
		}
	}
}

func (c *Client) publishOnce(ctx context.Context, body []byte, wire []protocol.PublishItem) ([]Receipt, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.pollTimeout+c.cfg.pollMargin)
	defer cancel()
	res, err := c.call(ctx, http.MethodPost, c.publishURL, body)
	if err != nil {
		return nil, err
	}
	var rep protocol.PublishReply
	if err := json.Unmarshal(res.body, &rep); err != nil {
		return nil, &protocolError{"publish reply: " + err.Error()}
	}
	if len(rep.Messages) != len(wire) {
		return nil, &protocolError{fmt.Sprintf("publish reply has %d receipts for %d messages", len(rep.Messages), len(wire))}
	}
	rs := make([]Receipt, len(wire))
	for i, m := range rep.Messages {
		rs[i] = Receipt{Topic: m.Topic, Seq: m.Seq, ID: wire[i].ID, Duplicate: m.Duplicate}
	}
	return rs, nil
}

// marshal is json.Marshal without HTML escaping, so that a RawMessage's
// text reaches the server as it was given (compacted).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}
