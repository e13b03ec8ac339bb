package httpdate

import (
	"net/http"
	"testing"
	"time"
)

func TestAppend(t *testing.T) {
	for _, now := range []time.Time{
		time.Date(2026, 11, 27, 21, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 27, 21, 0, 0, 999_999_999, time.UTC), // same second: cached
		time.Date(2026, 11, 27, 21, 0, 1, 0, time.FixedZone("X", 3600)),
		time.Date(2026, 11, 27, 20, 59, 59, 0, time.UTC), // backwards
	} {
		got := string(Append([]byte("Date: "), now))
		if want := "Date: " + now.UTC().Format(http.TimeFormat); got != want {
			t.Errorf("Append(%v) = %q, want %q", now, got, want)
		}
	}
}
