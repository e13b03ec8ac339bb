// Package testrun is a TestMain that runs its package's tests once more
// in a child process under other settings (another transport, one
// processor), so that every test holds under each; and what tests of
// several packages share (Buffer).
package testrun

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// Pass is one more run of the tests: what it is, and what it adds to the
// environment.
type Pass struct {
	What string
	Env  []string
}

// Main runs m's tests and checks for leaked goroutines. Then, unless
// again is false or the run fuzzes, benchmarks or lists, it runs the test
// binary again for each pass, stopping at the first that fails, and
// exits.
func Main(m *testing.M, again bool, passes ...Pass) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	if code == 0 && again && !special() {
		for _, p := range passes {
			if err := run(p); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
				break
			}
		}
	}
	os.Exit(code)
}

// special reports a run that fuzzes, benchmarks or lists rather than
// tests: one not to repeat.
func special() bool {
	for _, name := range []string{"test.fuzz", "test.bench", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return true
		}
	}
	return false
}

// run runs this test binary again, with its arguments and p's
// environment, its output going to this process's, after a line that
// says what the pass is.
func run(p Pass) error {
	fmt.Println("--- the same tests " + p.What)
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", p.What, err)
	}
	return nil
}

// Buffer is a bytes.Buffer safe for a logger and a test to share.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written since the last Reset.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset empties the buffer.
func (s *Buffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}
