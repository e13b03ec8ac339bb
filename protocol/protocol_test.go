package protocol_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/longpoll/longpoll/protocol"
)

func TestValidateTopic(t *testing.T) {
	for name, ok := range map[string]bool{
		"a":                       true,
		"chat.room-1/x:y@z_w":     true,
		strings.Repeat("a", 256):  true,
		"":                        false,
		strings.Repeat("a", 257):  false,
		"a b":                     false,
		"a\x00":                   false,
		"é":                       false,
		"a?b":                     false,
		"a%2F":                    false,
		"_longpoll.stats":         true, // valid; reserved is another rule
		"ABC.def-0123456789_:@/-": true,
	} {
		err := protocol.ValidateTopic(name)
		if (err == nil) != ok {
			t.Errorf("ValidateTopic(%.20q) = %v, want ok=%v", name, err, ok)
		}
		var e *protocol.Error
		if err != nil && (!errors.As(err, &e) || e.Code != protocol.CodeInvalidTopic) {
			t.Errorf("ValidateTopic(%.20q): %v is not an invalid_topic *Error", name, err)
		}
	}
}

func TestReserved(t *testing.T) {
	for name, want := range map[string]bool{
		"_longpoll.stats": true,
		"_LONGPOLL.stats": true,
		"_LongPoll.x":     true,
		"_lOnGpOlL.":      true,
		"_longpoll":       false, // no dot: not the prefix
		"_longpollx.a":    false,
		"longpoll.a":      false,
		"x_longpoll.a":    false,
		"_longpoll,a":     false,
		"":                false,
	} {
		if got := protocol.Reserved(name); got != want {
			t.Errorf("Reserved(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestErrorIsByCode: errors.Is matches a protocol error by its code, also
// through wrapping, and never matches another code.
func TestErrorIsByCode(t *testing.T) {
	err := fmt.Errorf("append: %w", &protocol.Error{Code: protocol.CodeStoreFull, Message: "disk full"})
	if !errors.Is(err, protocol.ErrStoreFull) {
		t.Error("a store_full error does not match ErrStoreFull")
	}
	if errors.Is(err, protocol.ErrUnavailable) {
		t.Error("a store_full error matches ErrUnavailable")
	}
	if got := protocol.ErrStoreFull.Error(); got != "longpoll: store is full" {
		t.Errorf("Error() = %q", got)
	}
}
