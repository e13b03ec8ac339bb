package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeSection returns the text of the README section under heading,
// up to the next heading of its level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q", heading)
	}
	level := heading[:strings.IndexByte(heading, ' ')+1]
	section, _, _ := strings.Cut(rest, "\n"+level)
	return section
}

// readmeFollowArgs returns the arguments of the README's
// "longpoll publish --follow" line, and the file it follows.
func readmeFollowArgs(t *testing.T) (args []string, file string) {
	t.Helper()
	for l := range strings.Lines(readmeSection(t, "## From the command line")) {
		if !strings.HasPrefix(l, "longpoll publish --follow ") {
			continue
		}
		cmd, _, _ := strings.Cut(l, "#")
		if strings.ContainsAny(cmd, `'"\$|;&<>`) {
			t.Fatalf("README line %q: the test runs it without a shell", l)
		}
		args = strings.Fields(cmd)[1:]
		return args, flagValue(args, "--follow")
	}
	t.Fatal(`README.md shows no "longpoll publish --follow" line`)
	return nil, ""
}

// flagValue returns the value that follows name in args, or "".
func flagValue(args []string, name string) string {
	for i, a := range args[:len(args)-1] {
		if a == name {
			return args[i+1]
		}
	}
	return ""
}

// followReceipt is a line that publish prints for a message.
type followReceipt struct {
	Topic     string
	Seq       uint64
	ID        string
	Duplicate bool
}

// followRun is a "longpoll publish --follow" child process.
type followRun struct {
	cmd      *exec.Cmd
	receipts chan followReceipt
	exited   chan error
	stderr   lockedBuffer
}

func startFollow(t *testing.T, dir string, args ...string) *followRun {
	t.Helper()
	r := &followRun{cmd: exec.Command(binary, args...), receipts: make(chan followReceipt, 1000), exited: make(chan error, 1)}
	r.cmd.Dir = dir
	r.cmd.Stderr = &r.stderr
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(r.receipts)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var rc followReceipt
			if err := json.Unmarshal(sc.Bytes(), &rc); err != nil {
				rc.ID = "not JSON: " + sc.Text()
			}
			r.receipts <- rc
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { <-read; r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() { r.cmd.Process.Kill(); <-read })
	return r
}

// take returns the next n receipts.
func (r *followRun) take(t *testing.T, n int) []followReceipt {
	t.Helper()
	var got []followReceipt
	deadline := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case rc, ok := <-r.receipts:
			if !ok {
				t.Fatalf("publish ended after %d of %d receipts: %v\n%s", len(got), n, <-r.exited, r.stderr.String())
			}
			got = append(got, rc)
		case <-deadline:
			t.Fatalf("%d of %d receipts within 20 s\n%s", len(got), n, r.stderr.String())
		}
	}
	return got
}

// stop sends SIGTERM and wants exit status 0 with no receipt not taken.
func (r *followRun) stop(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.exited:
		if err != nil {
			t.Fatalf("publish --follow after SIGTERM: %v, want exit status 0\n%s", err, r.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("publish --follow did not exit after SIGTERM")
	}
	for rc := range r.receipts {
		t.Errorf("a receipt that no line written called for: %+v", rc)
	}
}

// followFile is a log file that the test writes and knows the lines and
// offsets of.
type followFile struct {
	t     *testing.T
	f     *os.File
	lines []string // complete lines
	offs  []int64
	start int64  // where part starts
	part  string // written after the last newline
}

func newFollowFile(t *testing.T, path string) *followFile {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &followFile{t: t, f: f}
}

// write appends s, which may end in the middle of a line.
func (ff *followFile) write(s string) {
	ff.t.Helper()
	if _, err := ff.f.WriteString(s); err != nil {
		ff.t.Fatal(err)
	}
	for s != "" {
		l, rest, full := strings.Cut(s, "\n")
		if !full {
			ff.part += l
			break
		}
		ff.offs = append(ff.offs, ff.start)
		ff.lines = append(ff.lines, ff.part+l)
		ff.start += int64(len(ff.part) + len(l) + 1)
		ff.part, s = "", rest
	}
}

// lines writes n lines "<name>-<i>" from i = from.
func (ff *followFile) writeLines(name string, from, n int) {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "%s-%d some text\n", name, i)
	}
	ff.write(b.String())
}

// check wants rs to be the receipts of the lines from index i on, as new
// messages or duplicates, with ids ending in their offsets; it returns the
// file's identity, the id without its offset.
func (ff *followFile) check(rs []followReceipt, i int, dup bool) string {
	ff.t.Helper()
	if i+len(rs) > len(ff.lines) {
		ff.t.Fatalf("%d receipts for %d lines", len(rs), len(ff.lines)-i)
	}
	ident := ""
	for k, rc := range rs {
		prefix, ok := strings.CutSuffix(rc.ID, ":"+strconv.FormatInt(ff.offs[i+k], 10))
		if !ok || rc.Topic != "logs" || rc.Duplicate != dup || ident != "" && prefix != ident {
			ff.t.Fatalf("receipt %+v for the line %q at offset %d (duplicate: want %v)", rc, ff.lines[i+k], ff.offs[i+k], dup)
		}
		ident = prefix
	}
	return ident
}

// TestFollowReadmePipeline runs the README's "publish --follow" line on a
// file that grows, is rotated (renamed, then created again), and is
// truncated in place, stops it and runs it again, and finds every line
// once on the server, in order: no line lost, none twice.
func TestFollowReadmePipeline(t *testing.T) {
	s := startServer(t, nil)
	args, file := readmeFollowArgs(t)
	args = append(args, "--server", s.url)
	dir := t.TempDir()
	path := filepath.Join(dir, file)
	var want []string
	idents := map[string]bool{}
	newIdent := func(id string) {
		t.Helper()
		if idents[id] {
			t.Fatalf("two files share the identity %q", id)
		}
		idents[id] = true
	}

	a := newFollowFile(t, path)
	a.writeLines("a", 1, 5)
	run := startFollow(t, dir, args...)
	newIdent(a.check(run.take(t, 5), 0, false))
	a.writeLines("a", 6, 5)
	a.check(run.take(t, 5), 5, false)

	// Rotation: the writer goes on in the renamed file until it reopens.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	a.writeLines("a", 11, 2)
	b := newFollowFile(t, path)
	b.writeLines("b", 1, 5)
	rs := run.take(t, 7)
	a.check(rs[:2], 10, false)
	newIdent(b.check(rs[2:], 0, false))
	want = append(want, a.lines...)

	// A line not yet complete at the stop is not sent.
	b.writeLines("b", 6, 1)
	b.write("b-7 half a ")
	b.check(run.take(t, 1), 5, false)
	run.stop(t)

	// While stopped: the line completed, and more.
	b.write("line\n")
	b.writeLines("b", 8, 3)
	run = startFollow(t, dir, args...)
	rs = run.take(t, 10)
	b.check(rs[:6], 0, true)
	b.check(rs[6:], 6, false)
	want = append(want, b.lines...)

	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	c := newFollowFile(t, path)
	c.writeLines("c", 1, 5)
	newIdent(c.check(run.take(t, 5), 0, false))
	want = append(want, c.lines...)

	// Truncated in place, as logrotate's copytruncate does.
	if err := c.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	d := &followFile{t: t, f: c.f}
	d.writeLines("d", 1, 3)
	newIdent(d.check(run.take(t, 3), 0, false))
	want = append(want, d.lines...)
	run.stop(t)

	var got []string
	ids := map[string]bool{}
	q := url.Values{"topic": {"logs"}, "since": {"earliest"}, "timeout": {"0"}, "limit": {"1000"}}
	for {
		r, err := pollOnce(t.Context(), s.url, q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Gaps) > 0 {
			t.Fatalf("gaps: %v", r.Gaps)
		}
		if len(r.Messages) == 0 {
			break
		}
		for _, m := range r.Messages {
			var text string
			if err := json.Unmarshal(m.Data, &text); err != nil {
				t.Fatalf("data %s: not a JSON string (--raw)", m.Data)
			}
			if ids[m.ID] || !strings.HasPrefix(m.ID, flagValue(args, "--id-prefix")) {
				t.Fatalf("id %q twice, or without the prefix", m.ID)
			}
			ids[m.ID] = true
			got = append(got, text)
		}
		q.Del("since")
		q.Set("cursor", r.Cursor)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the server has\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	t.Logf("%d lines of 4 files, each once and in order", len(got))
}
