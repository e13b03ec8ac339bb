package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// localURL is the nats-server service of the machine (Debian's 2.9.10
// on the development host).
const localURL = "nats://127.0.0.1:4222"

// embedded is a current nats-server, from the module, run in the test's
// process.
type embedded struct {
	srv  *server.Server
	port int
	dir  string
}

func startEmbedded(t testing.TB) *embedded {
	t.Helper()
	e := &embedded{dir: t.TempDir()}
	e.start(t)
	t.Cleanup(e.stop)
	return e
}

// start runs the server, on the port it had before if it ran already.
func (e *embedded) start(t testing.TB) {
	t.Helper()
	port := e.port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: e.dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded nats-server did not start")
	}
	e.srv = s
	e.port = s.Addr().(*net.TCPAddr).Port
}

func (e *embedded) stop() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
}

func (e *embedded) url() string { return "nats://127.0.0.1:" + strconv.Itoa(e.port) }

// local returns the URL of the machine's nats-server, skipping the test
// when it is not running, unless CI=true, where that fails the test.
func local(t *testing.T) string {
	t.Helper()
	nc, err := nats.Connect(localURL, nats.Timeout(time.Second))
	if err == nil {
		defer nc.Close()
		if _, err = natsjs.New(nc); err == nil {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			js, _ := natsjs.New(nc)
			_, err = js.AccountInfo(ctx)
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the nats-server service at %s (with JetStream) is needed: %v", localURL, err)
		}
		t.Skipf("SKIP: no nats-server with JetStream at %s (%v); CI=true makes this a failure", localURL, err)
	}
	return localURL
}

// target is a server the tests run against.
type target struct {
	name string
	url  func(t *testing.T) string
}

func targets() []target {
	return []target{
		{"embedded", func(t *testing.T) string { return startEmbedded(t).url() }},
		{"local-2.9", local},
	}
}

// scope gives each broker of a test its own stream, prefix and buckets,
// deleted when the test ends, so that parallel tests and other users of
// a shared server never meet.
func scope(t testing.TB, url string) string {
	t.Helper()
	var r [5]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	name, prefix := "LPT_"+id, "lpt"+id
	t.Cleanup(func() { dropScope(url, name) })
	return fmt.Sprintf("%s?stream=%s&prefix=%s", url, name, prefix)
}

func dropScope(url, name string) {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range []string{name, name + "_IDS", "KV_" + name + "_REVOKED", "KV_" + name + "_NODES"} {
		_ = js.DeleteStream(ctx, s)
	}
}

func open(t testing.TB, url string, opts ...Option) *Broker {
	t.Helper()
	b, err := Open(url, opts...)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
