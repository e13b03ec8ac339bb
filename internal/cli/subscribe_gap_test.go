package cli

import (
	"encoding/json"
	"testing"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/client"
)

// Each gap is one JSON line, with missed for the reasons that count.
func TestAppendEventGaps(t *testing.T) {
	for _, tt := range []struct {
		gap  longpoll.Gap
		want string
	}{
		{longpoll.Gap{Topic: "chat", Reason: longpoll.GapExpired, Missed: 5}, `{"gap":{"topic":"chat","reason":"expired","missed":5}}`},
		{longpoll.Gap{Topic: "chat", Reason: longpoll.GapReset}, `{"gap":{"topic":"chat","reason":"reset"}}`},
		{longpoll.Gap{Topic: "chat", Reason: longpoll.GapCorrupt, Missed: 1}, `{"gap":{"topic":"chat","reason":"corrupt","missed":1}}`},
	} {
		line := appendEvent(nil, client.Event{Gap: &tt.gap})
		if string(line) != tt.want+"\n" || !json.Valid(line) {
			t.Errorf("%s gap printed as %q, want %s", tt.gap.Reason, line, tt.want)
		}
	}
}
