package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func token(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"token"}, args...)...).Output()
	if err != nil {
		t.Fatalf("longpoll token %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func get(t *testing.T, url, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeJWT: tokens from longpoll token authorize; /metrics needs the
// admin grant; SIGHUP reloads the secret without dropping the server.
func TestServeJWT(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 3)), 0o600)
	s := startServer(t, nil, "--auth", "jwt", "--jwt-secret-file", secret)
	user := token(t, "--secret-file", secret, "--sub", "u", "--subscribe", "news.*")
	admin := token(t, "--secret-file", secret, "--sub", "ops", "--admin")
	if st, b := get(t, s.url+"/v1/poll?topic=news.a&timeout=0", user); st != 200 {
		t.Fatalf("user poll: %d %s", st, b)
	}
	if st, b := get(t, s.url+"/v1/poll?topic=other&timeout=0", user); st != 403 || !strings.Contains(b, "forbidden") {
		t.Fatalf("user poll outside grants: %d %s", st, b)
	}
	if st, _ := get(t, s.url+"/metrics", user); st != 403 {
		t.Fatalf("/metrics without admin: %d", st)
	}
	if st, _ := get(t, s.url+"/metrics", ""); st != 401 {
		t.Fatalf("/metrics without token: %d", st)
	}
	if st, b := get(t, s.url+"/metrics", admin); st != 200 || !strings.Contains(b, "longpoll_polls_held") {
		t.Fatalf("/metrics with admin: %d", st)
	}
	if strings.Contains(s.logText(), user) {
		t.Fatal("a token appears in the log")
	}

	os.WriteFile(secret, []byte(strings.Repeat("fedcba9876543210", 3)), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "reloaded JWT keys")
	if st, _ := get(t, s.url+"/v1/poll?topic=news.a&timeout=0", user); st != 401 {
		t.Fatalf("old token after reload: %d", st)
	}
	fresh := token(t, "--secret-file", secret, "--sub", "u", "--subscribe", "news.*")
	if st, _ := get(t, s.url+"/v1/poll?topic=news.a&timeout=0", fresh); st != 200 {
		t.Fatalf("new token after reload: %d", st)
	}
}

func TestAdminAddr(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(strings.Repeat("x", 40)), 0o600)
	s := startServer(t, nil, "--auth", "jwt", "--jwt-secret-file", secret, "--admin-addr", "127.0.0.1:0")
	waitLog(t, s, "admin listening")
	m := listenAdmin.FindStringSubmatch(s.logText())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", s.logText())
	}
	if st, b := get(t, "http://"+m[1]+"/metrics", ""); st != 200 || !strings.Contains(b, "longpoll_") {
		t.Fatalf("admin /metrics: %d", st)
	}
	if st, _ := get(t, s.url+"/metrics", ""); st == 200 {
		t.Fatal("/metrics served on the main address too")
	}
	// The admin API: with no token there, with the admin grant on --addr.
	if st, b := get(t, "http://"+m[1]+"/v1/admin/node", ""); st != 200 || !strings.Contains(b, `"node"`) {
		t.Fatalf("admin node on --admin-addr without a token: %d %s", st, b)
	}
	if st, _ := get(t, s.url+"/v1/admin/node", ""); st != 401 {
		t.Fatalf("admin node on --addr without a token: %d, want 401", st)
	}
	admin := token(t, "--secret-file", secret, "--sub", "ops", "--admin")
	if st, b := get(t, s.url+"/v1/admin/node", admin); st != 200 {
		t.Fatalf("admin node on --addr with an admin token: %d %s", st, b)
	}
}

func TestRefusesOpenNonLoopback(t *testing.T) {
	out, err := exec.Command(binary, "serve", "--addr", "0.0.0.0:0").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--allow-unauthenticated") {
		t.Fatalf("serve on 0.0.0.0 without auth: %v %s", err, out)
	}
}
