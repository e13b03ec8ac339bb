package auth

import "testing"

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern, topic string
		want           bool
	}{
		{"chat", "chat", true},
		{"chat", "chat.x", false},
		{"chat.*", "chat.room1", true},
		{"chat.*", "chat", false},
		{"chat.*", "chat.a.b", false},
		{"chat.*", "chatroom.x", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{"*.b", "a.b", true},
		{"*.b", "a.c", false},
		{"user.42.>", "user.42.inbox", true},
		{"user.42.>", "user.42.a.b.c", true},
		{"user.42.>", "user.42", false},
		{"user.42.>", "user.43.inbox", false},
		{">", "anything.at.all", true},
		{">", "x", true},
		{"a.*.c.>", "a.b.c.d", true},
		{"a.*.c.>", "a.b.c", false},
		{"a/b:c@d", "a/b:c@d", true},
		{"a.b", "a.b.", false},
		{"a.*", "a.", false},
	}
	for _, c := range cases {
		p, err := ParsePattern(c.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", c.pattern, err)
		}
		if got := p.Match(c.topic); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.pattern, c.topic, got, c.want)
		}
	}
}

func TestParsePatternRejects(t *testing.T) {
	for _, p := range []string{"", "a..b", ".a", "a.", "a.>.b", "a*", "a.b>", "a b", "é"} {
		if _, err := ParsePattern(p); err == nil {
			t.Errorf("ParsePattern(%q) succeeded", p)
		}
	}
}

func FuzzPattern(f *testing.F) {
	for _, s := range []string{"chat.*|chat.x", "a.>|a.b.c", ">|x", "*|a.b", "a..b|a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		pat, topic, _ := cut(in)
		p, err := ParsePattern(pat)
		if err != nil {
			return
		}
		got := p.Match(topic)
		if want := slowMatch(p.tokens, splitDots(topic)); got != want {
			t.Fatalf("%q matches %q = %v, reference says %v", pat, topic, got, want)
		}
	})
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '|' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// slowMatch is the obvious reference implementation.
func slowMatch(pat, top []string) bool {
	for _, t := range top {
		if t == "" {
			return false
		}
	}
	for i, p := range pat {
		if p == ">" {
			return len(top) > i
		}
		if i >= len(top) || p != "*" && p != top[i] {
			return false
		}
	}
	return len(top) == len(pat)
}
