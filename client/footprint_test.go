package client_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// serverParts are import paths and symbol prefixes that a program using
// only the client must not contain: the server, its internal parts, its
// stores and their drivers.
var serverParts = []string{
	"github.com/longpoll/longpoll.",
	"github.com/longpoll/longpoll/internal/",
	"github.com/longpoll/longpoll/broker/",
	"github.com/longpoll/longpoll/auth",
	"github.com/longpoll/longpoll/prommetrics",
	"go.etcd.io/bbolt",
	"github.com/redis/go-redis",
	"github.com/prometheus/",
	"github.com/golang-jwt/",
}

// TestClientOnlyFootprint builds a program that imports only the client
// and checks, with go tool nm, that it links no server symbol, and with
// go list, that it depends on no server package or store driver.
func TestClientOnlyFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "clientonly")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/clientonly").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	var clientSyms int
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		sym := f[len(f)-1]
		if strings.HasPrefix(sym, "github.com/longpoll/longpoll/client.") {
			clientSyms++
		}
		for _, p := range serverParts {
			if strings.HasPrefix(sym, p) {
				t.Errorf("server symbol linked into a client-only program: %s", sym)
			}
		}
	}
	if clientSyms == 0 {
		t.Fatal("no client symbol in the program: the check saw nothing")
	}
	deps, err := exec.Command("go", "list", "-deps", "./testdata/clientonly").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.Lines(string(deps)) {
		dep = strings.TrimSpace(dep)
		for _, p := range serverParts {
			if strings.HasPrefix(dep+".", p) || strings.HasPrefix(dep, p) {
				t.Errorf("client-only program depends on %s", dep)
			}
		}
	}
}
