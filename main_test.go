package longpoll_test

import (
	"os"
	"testing"

	"github.com/longpoll/longpoll/internal/eventloop"
	"github.com/longpoll/longpoll/internal/testrun"
)

// TestMain checks for leaked goroutines and then runs the same tests
// over the dense transport, in child processes: once with its workers,
// once serving on the loop with one processor, so that every end-to-end
// test holds for each way of serving.
func TestMain(m *testing.M) {
	testrun.Main(m, eventloop.Supported && os.Getenv(envTransport) == "",
		testrun.Pass{What: "over the dense transport", Env: []string{envTransport + "=dense"}},
		testrun.Pass{What: "over the dense transport serving on its loop", Env: []string{envTransport + "=inline", "GOMAXPROCS=1"}})
}
