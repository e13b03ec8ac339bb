//go:build linux

package bench

import (
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// receiveTime takes the time from an SCM_TIMESTAMPNS control message, and
// the zero time from anything else, without reading past what the kernel
// wrote.
func TestReceiveTime(t *testing.T) {
	want := time.Unix(1_790_000_000, 123_456_789)
	hdr := int(unsafe.Sizeof(unix.Cmsghdr{}))
	full := hdr + int(unsafe.Sizeof(unix.Timespec{}))
	build := func(level, typ int32, cmsgLen, controlLen int) (*unix.Msghdr, *[8]uint64) {
		var oob [8]uint64
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level, h.Type = level, typ
		h.SetLen(cmsgLen)
		ts := (*unix.Timespec)(unsafe.Add(unsafe.Pointer(&oob[0]), unix.CmsgLen(0)))
		*ts = unix.NsecToTimespec(want.UnixNano())
		var msg unix.Msghdr
		msg.SetControllen(controlLen)
		return &msg, &oob
	}
	for _, tc := range []struct {
		name             string
		level, typ       int32
		cmsgLen, ctrlLen int
		ok               bool
	}{
		{"a receive time", unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, full, full, true},
		{"no control message", unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, full, 0, false},
		{"a control message cut short", unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, full, full - 1, false},
		{"a header that claims less than a time", unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, hdr, full, false},
		{"another level", unix.IPPROTO_TCP, unix.SCM_TIMESTAMPNS, full, full, false},
		{"another type", unix.SOL_SOCKET, unix.SCM_RIGHTS, full, full, false},
	} {
		msg, oob := build(tc.level, tc.typ, tc.cmsgLen, tc.ctrlLen)
		got := receiveTime(msg, oob)
		if tc.ok && !got.Equal(want) || !tc.ok && !got.IsZero() {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}
