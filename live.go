package longpoll

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Live is the part of a Server's settings that can change while it
// serves (longpoll serve applies them from its config file at SIGHUP).
// The rest is fixed at New.
type Live struct {
	PollTimeout      time.Duration // WithPollTimeout
	MaxTopicsPerPoll int           // WithMaxTopicsPerPoll
	MaxMessageSize   int           // WithMaxMessageSize
	MaxBatch         int           // WithMaxBatch
	MaxBodySize      int64         // WithMaxBodySize
	MaxReplyBytes    int           // WithMaxReplyBytes
	RetryAfter       time.Duration // WithRetryAfter
	CORSOrigins      []string      // WithCORS; nil or empty allows no cross-origin request
}

// Live returns the settings in force that Reconfigure can change.
func (s *Server) Live() Live {
	c := s.live.Load()
	l := Live{
		PollTimeout:      c.defaultTimeout,
		MaxTopicsPerPoll: c.maxTopicsPerPoll,
		MaxMessageSize:   c.maxMessageSize,
		MaxBatch:         c.maxBatch,
		MaxBodySize:      c.maxBodySize,
		MaxReplyBytes:    c.maxReplyBytes,
		RetryAfter:       c.retryAfter,
	}
	if len(c.corsOrigins) > 0 {
		l.CORSOrigins = slices.Sorted(maps.Keys(c.corsOrigins))
	}
	return l
}

// Reconfigure puts l in force at once: requests that start afterwards
// see all of it, those under way keep what they started with (a held
// poll keeps its hold; a reply being built keeps its size bound). It
// checks every field first and changes nothing when one is wrong.
func (s *Server) Reconfigure(l Live) error {
	var errs []error
	pos := func(name string, ok bool) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	pos("poll timeout", l.PollTimeout > 0)
	pos("max topics per poll", l.MaxTopicsPerPoll > 0)
	pos("max message size", l.MaxMessageSize > 0)
	pos("max batch", l.MaxBatch > 0)
	pos("max body size", l.MaxBodySize > 0)
	pos("max reply bytes", l.MaxReplyBytes > 0)
	pos("retry after", l.RetryAfter > 0)
	if err := errors.Join(errs...); err != nil {
		return errors.New("longpoll: " + strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	c := &liveConfig{
		defaultTimeout:   l.PollTimeout,
		maxTopicsPerPoll: l.MaxTopicsPerPoll,
		maxMessageSize:   l.MaxMessageSize,
		maxBatch:         l.MaxBatch,
		maxBodySize:      l.MaxBodySize,
		maxReplyBytes:    l.MaxReplyBytes,
		retryAfter:       l.RetryAfter,
	}
	if len(l.CORSOrigins) > 0 {
		c.corsOrigins = corsSet(l.CORSOrigins)
	}
	s.live.Store(c)
	return nil
}
