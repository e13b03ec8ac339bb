//go:build unix

package web_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The JavaScript tests (js/test) run from here so that go test ./... runs
// them: the client's unit tests against a real longpoll serve, and the
// pages in Debian's chromium. Without node (or chromium) they skip, except
// in CI (CI=true), where they fail. The tests of the client behind a proxy
// start an nginx of their own (js/test/server.mjs, startNginx): without
// nginx they skip with a message, except in CI, where they fail.

var (
	setupOnce sync.Once
	binPath   string
	setupErr  error
)

// jsDir is js/ at the module's root.
func jsDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "js"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// need finds the tools a test needs: a missing one skips the test, or
// fails it in CI.
func need(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the JavaScript tests")
	}
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("%s not found: the JavaScript and browser tests need node and npm (Node 18+) and Debian's chromium (apt-get install -y chromium)", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func chromium() string {
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		return p
	}
	return "chromium"
}

// setup builds the longpoll binary, installs js/'s locked dependencies
// when node_modules is missing, and builds the client the tests import.
func setup(t *testing.T) {
	t.Helper()
	js := jsDir(t)
	setupOnce.Do(func() {
		if binDir, setupErr = os.MkdirTemp("", "longpoll-web-test"); setupErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "longpoll")
		// go test puts its own go first on the PATH of what it runs.
		const goTool = "go"
		if setupErr = run(t.Context(), "", nil, goTool, "build", "-o", binPath, "github.com/longpoll/longpoll/cmd/longpoll"); setupErr != nil {
			return
		}
		if _, err := os.Stat(filepath.Join(js, "node_modules")); err != nil {
			if setupErr = run(t.Context(), js, nil, "npm", "ci", "--no-audit", "--no-fund"); setupErr != nil {
				return
			}
		}
		// The pages go to a scratch directory: the binary embeds the
		// committed web/dist, which js/check-build.sh compares.
		setupErr = run(t.Context(), js, nil, "node", "build.mjs", "--out", filepath.Join(binDir, "web"))
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// nodeTest runs node --test on one file of js/test and fails with its
// output if any test fails.
func nodeTest(t *testing.T, file string, env ...string) {
	t.Helper()
	setup(t)
	js := jsDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	// node's --test-timeout bounds each file as well as each test in it:
	// it must hold all of a file's tests, within the context above.
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-concurrency=1", "--test-timeout=200000", filepath.Join("test", file))
	cmd.Dir = js
	cmd.Env = append(os.Environ(), append([]string{"LONGPOLL_BIN=" + binPath}, env...)...)
	// On timeout, end node and the servers it started: its process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if err != nil {
		t.Fatalf("node --test %s: %v after %v\n%s", file, err, time.Since(start).Round(time.Millisecond), out.String())
	}
	var summary []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "# pass") || strings.HasPrefix(l, "# fail") {
			summary = append(summary, l)
		}
	}
	t.Logf("node --test %s: %v\n%s", file, time.Since(start).Round(time.Millisecond), strings.Join(summary, "\n"))
}

func TestJSClient(t *testing.T) {
	need(t, "node", "npm")
	nodeTest(t, "client.test.mjs")
}

func TestBrowser(t *testing.T) {
	need(t, "node", "npm", chromium())
	browser, _ := exec.LookPath(chromium())
	artifacts := filepath.Join(jsDir(t), "test-artifacts")
	nodeTest(t, "browser.test.mjs", "CHROMIUM_PATH="+browser, "LONGPOLL_ARTIFACTS="+artifacts)
	t.Logf("screenshots in %s", artifacts)
}
