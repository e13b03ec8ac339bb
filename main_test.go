package longpoll_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"go.uber.org/goleak"

	"github.com/longpoll/longpoll/internal/dense"
)

// TestMain checks for leaked goroutines and then runs the same tests once
// more over the dense transport, in a child process, so that every
// end-to-end test holds for both transports.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	if code == 0 && dense.Supported && os.Getenv(envTransport) == "" && !special() {
		fmt.Println("--- the same tests over the dense transport")
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), envTransport+"=dense")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "over the dense transport: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// special reports a run that fuzzes, benchmarks or lists rather than tests.
func special() bool {
	for _, name := range []string{"test.fuzz", "test.bench", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return true
		}
	}
	return false
}
