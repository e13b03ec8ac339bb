package longpoll_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/longpoll/longpoll/internal/dense"
	"github.com/longpoll/longpoll/internal/testrun"
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
	if code == 0 && dense.Supported && os.Getenv(envTransport) == "" && !testrun.Special() {
		err := testrun.Again("over the dense transport", envTransport+"=dense")
		if err == nil {
			err = testrun.Again("over the dense transport serving on its loop", envTransport+"=inline", "GOMAXPROCS=1")
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
