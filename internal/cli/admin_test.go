package cli

import (
	"testing"
	"time"
)

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{10 * 1024, "10 KiB"},
		{1023 * 1024, "1023 KiB"},
		{5 << 20, "5.0 MiB"},
		{300 << 30, "300 GiB"},
		{2 << 40, "2.0 TiB"},
		{3 << 50, "3.0 PiB"},
	} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestUTCTime(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	at := time.Date(2026, 12, 5, 10, 30, 0, 500, paris)
	for _, tc := range []struct {
		t    *time.Time
		want string
	}{
		{nil, "-"},
		{&time.Time{}, "-"},
		{&at, "2026-12-05T09:30:00Z"},
	} {
		if got := utcTime(tc.t); got != tc.want {
			t.Errorf("utcTime(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}
