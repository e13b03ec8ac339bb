package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// noLeaks checks, once the test and its cleanups are done, that no
// goroutine is left.
func noLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// wakers are the ways a follower may learn of a change, each tested.
func wakers(t *testing.T) map[string]func(string) waker {
	t.Helper()
	w := newFileWaker(t.TempDir() + "/f")
	defer w.Close()
	if _, poll := w.(pollWaker); poll && runtime.GOOS == "linux" {
		t.Fatal("newFileWaker on linux polls, want inotify")
	}
	return map[string]func(string) waker{"notify": newFileWaker, "poll": newPollWaker}
}

// followed is a follower running over a real file.
type followed struct {
	t    *testing.T
	out  chan line
	errc chan error
}

// follow starts a follower of path; the test ends it. The channel is
// unbuffered, so the follower sends a line only when the test takes it.
func follow(t *testing.T, path, prefix string, newWaker func(string) waker, opts ...func(*follower)) *followed {
	t.Helper()
	fl := newFollower(path, prefix)
	fl.newWaker = newWaker
	for _, o := range opts {
		o(fl)
	}
	ctx, cancel := context.WithCancel(t.Context())
	f := &followed{t: t, out: make(chan line), errc: make(chan error, 1)}
	go func() { f.errc <- fl.run(ctx, f.out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-f.errc; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("follower: %v", err)
		}
	})
	return f
}

// next returns the next line the follower sends.
func (f *followed) next() line {
	f.t.Helper()
	select {
	case l := <-f.out:
		return l
	case err := <-f.errc:
		f.t.Fatalf("follower ended: %v", err)
	case <-time.After(10 * time.Second):
		f.t.Fatal("no line within 10 s")
	}
	return line{}
}

// expect takes lines and checks their text and offsets; it returns them.
func (f *followed) expect(want ...string) []line {
	f.t.Helper()
	var got []line
	for _, w := range want {
		text, off, _ := strings.Cut(w, "@")
		l := f.next()
		if string(l.text) != text || off != "" && off != itoa(l.off) {
			f.t.Fatalf("line %q at %d (id %s), want %s", l.text, l.off, l.id, w)
		}
		if !strings.HasSuffix(l.id, ":"+itoa(l.off)) {
			f.t.Fatalf("id %q does not end with the offset %d", l.id, l.off)
		}
		got = append(got, l)
	}
	return got
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, path, s string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	write(t, f, s)
	return f
}

// TestFollowerLines: each complete line once, with its offset, also when
// it spans reads; CR LF loses the CR; a last line is sent only once its
// newline comes.
func TestFollowerLines(t *testing.T) {
	noLeaks(t)
	for name, w := range wakers(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.log")
			f := create(t, path, "a\r\nb\n\nc")
			fl := follow(t, path, "p-", w, func(fl *follower) { fl.chunkSize = 2 })
			ls := fl.expect("a@0", "b@3", "@5")
			write(t, f, "c\nd\n")
			ls = append(ls, fl.expect("cc@6", "d@9")...)
			ident := strings.TrimSuffix(ls[0].id, "0")
			if !strings.HasPrefix(ident, "p-") {
				t.Fatalf("id %q lacks the prefix", ls[0].id)
			}
			for _, l := range ls {
				if l.id != ident+itoa(l.off) {
					t.Fatalf("ids of one file differ before the offset: %q and %q", ls[0].id, l.id)
				}
			}
		})
	}
}

// TestFollowerRotation: a file renamed away is read to its end, its last
// line sent even without a newline, then the new file from its start,
// under another identity.
func TestFollowerRotation(t *testing.T) {
	noLeaks(t)
	for name, w := range wakers(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "app.log")
			old := create(t, path, "a1\na2\n")
			fl := follow(t, path, "", w)
			a := fl.expect("a1@0", "a2@3")
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			// The writer goes on in the old file until it reopens.
			write(t, old, "a3\na4")
			create(t, path, "a1\nb2\n")
			a = append(a, fl.expect("a3@6", "a4@9")...)
			b := fl.expect("a1@0", "b2@3")
			if b[0].id == a[0].id {
				t.Fatalf("the new file's first line took the old one's id %q", a[0].id)
			}
			fi, err := os.Stat(path + ".1")
			if err != nil {
				t.Fatal(err)
			}
			if key := fileKey(fi); !strings.HasPrefix(a[0].id, key) || strings.Count(a[0].id, ":") != strings.Count(key, ":")+1 {
				t.Fatalf("id %q: want device:inode:hash:offset, or hash:offset without an inode", a[0].id)
			}
			// Removed, then created again.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			create(t, path, "c1\n")
			if c := fl.expect("c1@0"); c[0].id == a[0].id || c[0].id == b[0].id {
				t.Fatalf("a re-created file reused an id: %q", c[0].id)
			}
		})
	}
}

// TestFollowerTruncation: a file truncated in place is a new file: read
// from its start, under new ids, also when it was written past the point
// read by the time the follower looks.
func TestFollowerTruncation(t *testing.T) {
	noLeaks(t)
	for name, w := range wakers(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.log")
			f := create(t, path, "x1\nx2\nx3\n")
			fl := follow(t, path, "", w)
			x := fl.expect("x1@0", "x2@3", "x3@6")
			if err := f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			write(t, f, "y1\n")
			y := fl.expect("y1@0")
			if y[0].id == x[0].id {
				t.Fatalf("after a truncation, a new line took the old id %q", x[0].id)
			}

			// The follower has read both lines when it sends the first, and
			// waits to send the second while the file is truncated and
			// written past them.
			write(t, f, "y2\n")
			fl.expect("y2@3")
			write(t, f, "y3\ny4\n")
			fl.expect("y3@6")
			if err := f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			write(t, f, "zz1\nzz2\nzz3\nzz4\n")
			fl.expect("y4@9")
			z := fl.expect("zz1@0", "zz2@4", "zz3@8", "zz4@12")
			if z[0].id == x[0].id || z[0].id == y[0].id {
				t.Fatalf("after a truncation, a new line took an old id: %q", z[0].id)
			}
		})
	}
}

// TestFollowerSameIDs: reading a file again gives its lines the same ids.
func TestFollowerSameIDs(t *testing.T) {
	noLeaks(t)
	path := filepath.Join(t.TempDir(), "app.log")
	create(t, path, "one\ntwo\n")
	first := follow(t, path, "run7-", newPollWaker).expect("one@0", "two@4")
	again := follow(t, path, "run7-", newPollWaker).expect("one@0", "two@4")
	for i := range first {
		if first[i].id != again[i].id || !strings.HasPrefix(first[i].id, "run7-") {
			t.Fatalf("ids %q then %q", first[i].id, again[i].id)
		}
	}
}

// TestFollowerErrors: a missing file and a line past the bound end the
// follower with an error.
func TestFollowerErrors(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	fl := newFollower(filepath.Join(dir, "missing.log"), "")
	if err := fl.run(t.Context(), make(chan line)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	path := filepath.Join(dir, "long.log")
	create(t, path, "ok\n"+strings.Repeat("x", 101))
	out := make(chan line, 1)
	fl = newFollower(path, "")
	fl.maxLine, fl.chunkSize = 100, 7
	err := fl.run(t.Context(), out)
	if err == nil || !strings.Contains(err.Error(), "offset 3 is longer than") {
		t.Fatalf("long line: %v", err)
	}
	if l := <-out; string(l.text) != "ok" {
		t.Fatalf("the line before the long one: %q", l.text)
	}
}

// TestPublishFollowUsage: what --follow refuses, and what its help says.
func TestPublishFollowUsage(t *testing.T) {
	noLeaks(t)
	t.Setenv("LONGPOLL_FOLLOW", "/nonexistent/ignored")
	run := func(args ...string) (int, string) {
		var out, errb strings.Builder
		code := Run(t.Context(), args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
		return code, errb.String()
	}
	missing := filepath.Join(t.TempDir(), "missing.log")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"publish", "--follow", missing, "t", "1"}, ExitUsage, "give no DATA"},
		{[]string{"publish", "--follow", missing, "--id", "x", "t"}, ExitUsage, "--id is for DATA"},
		{[]string{"publish", "--follow", missing, "--id-prefix", strings.Repeat("p", 256-maxFollowIDSuffix+1), "t"}, ExitUsage, "--id-prefix with --follow is longer than"},
		{[]string{"publish", "--follow", missing, "--server", "http://127.0.0.1:1", "t"}, ExitError, "reading " + missing + " after 0 messages: open "},
		// LONGPOLL_FOLLOW is not read: this reads stdin, which is empty.
		{[]string{"publish", "--server", "http://127.0.0.1:1", "t"}, ExitOK, ""},
	} {
		code, errs := run(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	code, help := run("publish", "--help")
	for _, want := range []string{"WARNING: ids numbered by stdin line are right only for input that is\nreplayed whole", "--follow reads FILE from its start", "  --follow "} {
		if code != ExitOK || !strings.Contains(help, want) {
			t.Errorf("publish --help: exit %d, lacks %q:\n%s", code, want, help)
		}
	}
}
