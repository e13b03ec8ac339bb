// Package limit keeps per-client rate limits and held-poll counts.
//
// Clients are spread over shards, each with its own mutex, so one client's
// check never waits on a global lock. Memory is bounded: a shard that grows
// past its share of MaxClients forgets the clients that are idle (no held
// poll and a full token bucket), which is indistinguishable from keeping
// them.
package limit

import (
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const shardCount = 64

// Config sets the limits; a zero rate or count means unlimited.
type Config struct {
	PublishRate  float64
	PublishBurst int
	PollRate     float64
	PollBurst    int
	MaxHeld      int
	// MaxClients bounds the clients tracked at once (default 1,000,000).
	MaxClients int
}

// Limiter tracks clients.
type Limiter struct {
	cfg    Config
	seed   maphash.Seed
	now    func() time.Time
	shards [shardCount]shard
}

type shard struct {
	mu      sync.Mutex
	clients map[string]*client
}

type client struct {
	pub, poll *rate.Limiter
	held      int
}

// New returns a Limiter; now is the clock (time.Now when nil).
func New(cfg Config, now func() time.Time) *Limiter {
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 1_000_000
	}
	if now == nil {
		now = time.Now
	}
	l := &Limiter{cfg: cfg, seed: maphash.MakeSeed(), now: now}
	for i := range l.shards {
		l.shards[i].clients = make(map[string]*client)
	}
	return l
}

func (l *Limiter) get(id string) (*shard, *client) {
	s := &l.shards[maphash.String(l.seed, id)%shardCount]
	s.mu.Lock()
	c := s.clients[id]
	if c == nil {
		if len(s.clients) >= l.cfg.MaxClients/shardCount+1 {
			l.evictIdle(s)
		}
		c = &client{}
		if l.cfg.PublishRate > 0 {
			c.pub = rate.NewLimiter(rate.Limit(l.cfg.PublishRate), max(l.cfg.PublishBurst, 1))
		}
		if l.cfg.PollRate > 0 {
			c.poll = rate.NewLimiter(rate.Limit(l.cfg.PollRate), max(l.cfg.PollBurst, 1))
		}
		s.clients[id] = c
	}
	return s, c
}

// evictIdle forgets clients with nothing held and full buckets. Called
// with s.mu held.
func (l *Limiter) evictIdle(s *shard) {
	now := l.now()
	for id, c := range s.clients {
		if c.held == 0 && full(c.pub, now) && full(c.poll, now) {
			delete(s.clients, id)
		}
	}
}

func full(r *rate.Limiter, now time.Time) bool {
	return r == nil || r.TokensAt(now) >= float64(r.Burst())
}

// Publish takes one publish token; when none is left it returns how long
// until one will be.
func (l *Limiter) Publish(id string) (ok bool, retry time.Duration) {
	if l.cfg.PublishRate <= 0 {
		return true, 0
	}
	s, c := l.get(id)
	defer s.mu.Unlock()
	return take(c.pub, l.now())
}

// StartPoll takes one poll token and a held-poll slot. On success the
// caller must call EndPoll when the poll ends.
func (l *Limiter) StartPoll(id string) (ok bool, retry time.Duration) {
	if l.cfg.PollRate <= 0 && l.cfg.MaxHeld <= 0 {
		return true, 0
	}
	s, c := l.get(id)
	defer s.mu.Unlock()
	if l.cfg.MaxHeld > 0 && c.held >= l.cfg.MaxHeld {
		return false, time.Second
	}
	if c.poll != nil {
		if ok, retry := take(c.poll, l.now()); !ok {
			return false, retry
		}
	}
	c.held++
	return true, 0
}

// PollStart takes one poll token and no held-poll slot, for a request
// counted as a poll start that holds nothing (one refused for its
// credential); when none is left it returns how long until one will be.
func (l *Limiter) PollStart(id string) (ok bool, retry time.Duration) {
	if l.cfg.PollRate <= 0 {
		return true, 0
	}
	s, c := l.get(id)
	defer s.mu.Unlock()
	return take(c.poll, l.now())
}

// EndPoll releases the slot StartPoll took.
func (l *Limiter) EndPoll(id string) {
	if l.cfg.PollRate <= 0 && l.cfg.MaxHeld <= 0 {
		return
	}
	s, c := l.get(id)
	c.held--
	s.mu.Unlock()
}

func take(r *rate.Limiter, now time.Time) (bool, time.Duration) {
	res := r.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}
