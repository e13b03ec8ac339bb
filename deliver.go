package longpoll

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/longpoll/longpoll/internal/hub"
	"github.com/longpoll/longpoll/internal/transport"
)

// deliver is the hub's DeliverFunc: it answers the claimed polls off the
// publisher's goroutine, so a publish never waits for its fan-out.
func (s *Server) deliver(batch []hub.Parked) {
	if r, ok := batch[0].(*parked).sink.(transport.Runner); ok {
		r.Run(func() { s.deliverBatch(batch) })
		return
	}
	go s.deliverBatch(batch)
}

// deliverBatch reads once for each group of polls with the same topics
// and positions, encodes that reply once, and writes the same bytes to
// every poll of the group.
func (s *Server) deliverBatch(batch []hub.Parked) {
	// Most often every poll of a batch is at the same place (subscribers
	// that keep up with one topic): one group, found with no key.
	all := make([]*parked, 0, len(batch))
	same, streams := true, false
	for _, b := range batch {
		p := b.(*parked)
		if p.st != nil {
			streams = true
		}
		if same && len(all) > 0 {
			q := all[0]
			same = p.limit == q.limit && slices.Equal(p.topics, q.topics) && slices.Equal(p.pos, q.pos)
		}
		all = append(all, p)
	}
	if streams { // streams and polls of the same positions do not share bytes
		polls := all[:0]
		var st []*parked
		for _, p := range all {
			if p.st != nil {
				st = append(st, p)
			} else {
				polls = append(polls, p)
			}
		}
		s.deliverGrouped(st, s.deliverStreams)
		if len(polls) > 0 {
			s.deliverGrouped(polls, s.deliverGroup)
		}
		return
	}
	if same {
		s.deliverGroup(all)
		return
	}
	s.deliverGrouped(all, s.deliverGroup)
}

// deliverGrouped splits all into groups of the same topics, positions
// and limit, in the order of their first member, and delivers each.
func (s *Server) deliverGrouped(all []*parked, deliver func([]*parked)) {
	groups := make(map[string][]*parked)
	var order []string
	var key []byte
	for _, p := range all {
		c := p.collector()
		key = c.appendKey(key[:0])
		g, ok := groups[string(key)]
		if !ok {
			order = append(order, string(key))
		}
		groups[string(key)] = append(g, p)
	}
	for _, k := range order {
		deliver(groups[k])
	}
}

// appendKey appends what makes two polls' replies identical: topics,
// positions and limit.
func (c *collector) appendKey(b []byte) []byte {
	b = strconv.AppendInt(b, int64(c.limit), 10)
	for i, t := range c.topics {
		b = append(b, 0)
		b = append(b, t...)
		b = append(b, 0)
		b = strconv.AppendUint(b, c.pos[i].Epoch, 36)
		b = append(b, ':')
		b = strconv.AppendUint(b, c.pos[i].Seq, 36)
	}
	return b
}

func (s *Server) deliverGroup(g []*parked) {
	lead := g[0]
	c := collector{topics: lead.topics, pos: slices.Clone(lead.pos), limit: int(lead.limit), maxBytes: s.live.Load().maxReplyBytes}
	if err := c.collect(context.Background(), s.broker); err != nil {
		for _, p := range g {
			p.brokerFailed(err)
		}
		return
	}
	if c.empty() {
		for _, p := range g {
			p.rearm()
		}
		return
	}
	size := c.replySize()
	if !s.reserveReply(&c, size) {
		for _, p := range g {
			p.fail(errRepliesFull)
		}
		return
	}
	body, bp := replyBuffer(size)
	body = appendReply(body, &c, false, 0)
	now := time.Now()
	// Every reply is written first, and the bookkeeping (hub, wheel,
	// metrics) done after: the last subscriber of a large group gets its
	// message that much sooner.
	gated := len(g) >= fanoutGate
	if gated {
		s.fanout.enter()
	}
	var z []byte // the body compressed, once, for the polls that take gzip
	zipped := false
	for _, p := range g {
		if p.gzip && len(body) >= s.cfg.gzipMin {
			if !zipped {
				z, zipped = compress(body), true
			}
			if z != nil {
				p.send(http.StatusOK, nil, z, true, now)
				continue
			}
		}
		p.send(http.StatusOK, nil, body, false, now)
	}
	if gated {
		s.fanout.leave()
	}
	s.budget.Add(-size)
	for _, p := range g {
		s.m.Delivered(now, c.out)
		for _, gp := range c.gaps {
			s.m.GapReported(gp.Reason)
		}
		n := len(body)
		if z != nil && p.gzip {
			n = len(z)
		}
		p.settle(OutcomeMessages, http.StatusOK, n, now)
	}
	putReplyBuffer(body, bp)
}
