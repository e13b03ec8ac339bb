package main

import (
	"bufio"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadmeGoProgram builds the README's Go program as it stands (only its
// server address changed to a longpoll serve child's), and wants it to
// print its own message, then to exit 0 at Ctrl-C (SIGINT). Run again, it
// resumes from its cursor file: its new message, and not the old one.
func TestReadmeGoProgram(t *testing.T) {
	section := readmeSection(t, "## Subscribe and publish from Go")
	_, rest, ok := strings.Cut(section, "```go\n")
	src, _, ok2 := strings.Cut(rest, "\n```\n")
	if !ok || !ok2 {
		t.Fatal("no ```go block in the README's Go section")
	}
	src += "\n"
	if b, err := format.Source([]byte(src)); err != nil || string(b) != src {
		t.Fatalf("the README's Go program is not gofmt'd: %v", err)
	}
	const addr = `"http://localhost:8080"`
	if strings.Count(src, addr) != 1 {
		t.Fatalf("the README's Go program names the server %s other than once", addr)
	}
	s := startServer(t, nil)
	src = strings.Replace(src, addr, strconv.Quote(s.url), 1)

	prog := buildWithThisModule(t, src)
	dir := t.TempDir() // where it keeps news.cursor
	runReadmeProgram(t, prog, dir, `news #1 {"text":"hi"}`)
	runReadmeProgram(t, prog, dir, `news #2 {"text":"hi"}`)
}

// buildWithThisModule builds the program src in a module of its own that
// requires this one from this working tree, offline, and returns the
// executable's path.
func buildWithThisModule(t *testing.T, src string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := ""
	for l := range strings.Lines(string(gomod)) {
		if strings.HasPrefix(l, "go ") {
			goLine = l
		}
	}
	// The main module's go.sum has every sum the build needs.
	sums, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"main.go": src,
		"go.mod": "module readme\n\n" + goLine + "\nrequire github.com/longpoll/longpoll v0.0.0\n\n" +
			"replace github.com/longpoll/longpoll => " + strconv.Quote(root) + "\n",
		"go.sum": string(sums),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "readme")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = dir
	// -mod=mod lets go fill in the requirements that the replaced module
	// brings; GOPROXY=off keeps it to the module cache.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the README's Go program: %v\n%s", err, out)
	}
	return exe
}

// runReadmeProgram runs prog in dir, wants want as the first line it
// prints, interrupts it and wants exit status 0.
func runReadmeProgram(t *testing.T, prog, dir, want string) {
	t.Helper()
	cmd := exec.Command(prog)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("the README's Go program ended without printing: %v\n%s", <-exited, stderr.String())
		}
		if l != want {
			t.Fatalf("the README's Go program printed %q first, want %q", l, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the README's Go program printed nothing within 30 s")
	}
	cmd.Process.Signal(syscall.SIGINT)
	for l := range lines {
		t.Errorf("then printed %q", l)
	}
	err = <-exited
	exited <- err // for the cleanup
	if err != nil {
		t.Fatalf("the README's Go program at SIGINT: %v, want exit status 0\n%s", err, stderr.String())
	}
}
