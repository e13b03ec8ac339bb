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

// TestMain checks for leaked goroutines and then runs the same tests
// over the dense transport, in child processes: once with its workers,
// once serving on the loop with one processor, so that every end-to-end
// test holds for each way of serving.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	if code == 0 && dense.Supported && os.Getenv(envTransport) == "" && !special() {
		for _, pass := range []struct{ name, kind, procs string }{
			{"the dense transport", "dense", ""},
			{"the dense transport serving on its loop", "inline", "GOMAXPROCS=1"},
		} {
			fmt.Println("--- the same tests over " + pass.name)
			cmd := exec.Command(os.Args[0], os.Args[1:]...)
			cmd.Env = append(os.Environ(), envTransport+"="+pass.kind)
			if pass.procs != "" {
				cmd.Env = append(cmd.Env, pass.procs)
			}
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "over %s: %v\n", pass.name, err)
				code = 1
				break
			}
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
