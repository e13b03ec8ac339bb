package auth

import (
	"errors"
	"strings"

	"github.com/longpoll/longpoll"
)

// Pattern is a compiled topic pattern: an exact name, or tokens separated
// by '.' where "*" stands for exactly one token and a final ">" for one or
// more. "chat.*" matches "chat.room1" but not "chat" or "chat.a.b";
// "user.42.>" matches "user.42.inbox" and "user.42.a.b" but not "user.42".
type Pattern struct {
	tokens []string
}

// ParsePattern compiles p.
func ParsePattern(p string) (Pattern, error) {
	if p == "" || len(p) > longpoll.MaxTopicLen {
		return Pattern{}, errors.New("pattern must be 1 to 256 bytes")
	}
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return Pattern{}, errors.New("pattern " + p + " has an empty token")
		case t == ">":
			if i != len(toks)-1 {
				return Pattern{}, errors.New("pattern " + p + ": > may only be the last token")
			}
		case t == "*":
		case strings.ContainsAny(t, "*>"):
			return Pattern{}, errors.New("pattern " + p + ": * and > must be whole tokens")
		default:
			if longpoll.ValidateTopic(t) != nil {
				return Pattern{}, errors.New("pattern " + p + " holds characters outside A-Z a-z 0-9 . _ : @ / -")
			}
		}
	}
	return Pattern{tokens: toks}, nil
}

// Match reports whether topic matches the pattern.
func (p Pattern) Match(topic string) bool {
	rest := topic
	for i, t := range p.tokens {
		if t == ">" {
			// One or more tokens, none empty.
			return rest != "" && rest[0] != '.' && rest[len(rest)-1] != '.' && !strings.Contains(rest, "..")
		}
		tok, after, more := strings.Cut(rest, ".")
		if t != "*" && t != tok || tok == "" {
			return false
		}
		if i == len(p.tokens)-1 {
			return !more
		}
		if !more {
			// Pattern has more tokens than the topic.
			return false
		}
		rest = after
	}
	return false
}

// Set is a list of patterns; it matches a topic that any of them matches.
type Set []Pattern

// ParseSet compiles every pattern of ps.
func ParseSet(ps []string) (Set, error) {
	s := make(Set, 0, len(ps))
	for _, p := range ps {
		c, err := ParsePattern(p)
		if err != nil {
			return nil, err
		}
		s = append(s, c)
	}
	return s, nil
}

// Match reports whether any pattern of s matches topic.
func (s Set) Match(topic string) bool {
	for _, p := range s {
		if p.Match(topic) {
			return true
		}
	}
	return false
}
