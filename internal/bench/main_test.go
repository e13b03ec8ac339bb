package bench_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/internal/bench"
	"go.uber.org/goleak"
)

// serveEnv makes the test binary a longpoll server on the address it
// holds, until SIGTERM: what the --spawn test starts.
const serveEnv = "BENCH_TEST_SERVE"

func TestMain(m *testing.M) {
	// The bench starts workers by running its own executable again: in
	// tests, this binary.
	if bench.IsWorker() {
		os.Exit(bench.Worker(context.Background(), os.Stdin, os.Stdout))
	}
	if addr := os.Getenv(serveEnv); addr != "" {
		os.Exit(serveUntilTerm(addr))
	}
	goleak.VerifyTestMain(m)
}

func serveUntilTerm(addr string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	b := memory.New()
	defer b.Close()
	srv, err := longpoll.New(b)
	if err != nil {
		return 1
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return 1
	}
	hs := &http.Server{Handler: srv}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return 1
	}
	return 0
}
