//go:build linux

package release

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func needCommand(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: %v", name, err)
	}
	return p
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unitLines are lines the unit must hold exactly.
var unitLines = []string{
	"NoNewPrivileges=yes",
	"ProtectSystem=strict",
	"ProtectHome=yes",
	"PrivateTmp=yes",
	"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
	"SystemCallFilter=@system-service",
	"CapabilityBoundingSet=",
	"StateDirectory=longpoll",
	"ExecReload=kill -HUP $MAINPID",
	"LimitNOFILE=1048576",
	"User=longpoll",
	"ExecStart=/usr/bin/longpoll serve --config /etc/longpoll/longpoll.toml --data-dir %S/longpoll",
}

func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary for two platforms")
	}
	needCommand(t, "dpkg-deb")
	amd64, arm64 := buildLinux(t, "amd64"), buildLinux(t, "arm64")
	b := testBuild(t, map[string]string{"linux/amd64": amd64, "linux/arm64": arm64})
	paths, err := Deb(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || !strings.HasSuffix(paths[0], "_amd64.deb") || !strings.HasSuffix(paths[1], "_arm64.deb") {
		t.Fatalf("paths %q, want the amd64 and arm64 packages", paths)
	}
	pkg := paths[0]

	info := mustRun(t, "dpkg-deb", "--info", pkg)
	for _, want := range []string{
		"Package: longpoll\n", "Version: 1.2.3\n", "Architecture: amd64\n", "Depends: adduser\n",
		"Section: net\n", "Homepage: https://github.com/longpoll/longpoll\n",
	} {
		if !strings.Contains(info, " "+want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	for _, script := range []string{"postinst", "prerm", "postrm", "conffiles"} {
		if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*?\s+` + script + `\b`).MatchString(info) {
			t.Errorf("dpkg-deb --info lists no %s:\n%s", script, info)
		}
	}
	if got := mustRun(t, "dpkg-deb", "--field", paths[1], "Architecture"); got != "arm64\n" {
		t.Errorf("the arm64 package's architecture: %q", got)
	}

	// Every file: its mode, owner and time.
	contents := mustRun(t, "dpkg-deb", "--contents", pkg)
	listed := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(contents), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("--contents line %q", line)
		}
		listed[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1] + " " + f[3] + " " + f[4]
	}
	stamp := pkgTime.Local().Format("2006-01-02 15:04")
	for path, mode := range map[string]string{
		"/usr/bin/longpoll":                                  "-rwxr-xr-x",
		"/usr/share/man/man1/longpoll.1.gz":                  "-rw-r--r--",
		"/usr/share/bash-completion/completions/longpoll":    "-rw-r--r--",
		"/usr/share/zsh/vendor-completions/_longpoll":        "-rw-r--r--",
		"/usr/share/fish/vendor_completions.d/longpoll.fish": "-rw-r--r--",
		"/etc/longpoll/longpoll.toml":                        "-rw-r--r--",
		"/lib/systemd/system/longpoll.service":               "-rw-r--r--",
	} {
		if want := mode + " root/root " + stamp; listed[path] != want {
			t.Errorf("%s: %q, want %q", path, listed[path], want)
		}
	}

	// The control files and the files themselves.
	ctrl := t.TempDir()
	mustRun(t, "dpkg-deb", "--control", pkg, ctrl)
	if got, err := os.ReadFile(filepath.Join(ctrl, "conffiles")); err != nil || string(got) != "/etc/longpoll/longpoll.toml\n" {
		t.Errorf("conffiles: %q (%v)", got, err)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		out, err := exec.Command("sh", "-n", filepath.Join(ctrl, s)).CombinedOutput()
		if err != nil {
			t.Errorf("sh -n %s: %v: %s", s, err, out)
		}
		body, _ := os.ReadFile(filepath.Join(ctrl, s))
		checkGuardedSystemctl(t, s, string(body))
	}
	root := t.TempDir()
	mustRun(t, "dpkg-deb", "-x", pkg, root)
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	unit := read("lib/systemd/system/longpoll.service")
	lines := strings.Split(unit, "\n")
	for _, want := range unitLines {
		if !slices.Contains(lines, want) {
			t.Errorf("the unit lacks the line %q", want)
		}
	}
	if bin, err := os.ReadFile(amd64); err != nil || read("usr/bin/longpoll") != string(bin) {
		t.Error("/usr/bin/longpoll is not the amd64 build")
	}
	zr, err := gzip.NewReader(strings.NewReader(read("usr/share/man/man1/longpoll.1.gz")))
	if err != nil {
		t.Fatal(err)
	}
	man, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(man, []byte(`\-\-max\-hold`)) || !bytes.Contains(man, []byte(`.TH LONGPOLL 1 "2026\-12\-05" "longpoll v1.2.3"`)) {
		t.Errorf("the man page lacks --max-hold or its .TH line:\n%.400s", man)
	}
	for _, p := range []string{
		"usr/share/bash-completion/completions/longpoll", "usr/share/zsh/vendor-completions/_longpoll",
		"usr/share/fish/vendor_completions.d/longpoll.fish",
	} {
		if s := read(p); !strings.Contains(s, "max-hold") || !strings.Contains(s, "max-held-polls") {
			t.Errorf("%s does not complete --max-hold:\n%.300s", p, s)
		}
	}
	conf := read("etc/longpoll/longpoll.toml")
	for _, want := range []string{`addr = "localhost:8080"`, `auth = "jwt"`, `jwt-secret-file = "/etc/longpoll/jwt-secret"`, `data-dir = "/var/lib/longpoll"`} {
		if !strings.Contains(conf, "\n"+want+" ") {
			t.Errorf("the configuration file does not set %s", want)
		}
	}
	checkStopTimeout(t, filepath.Join(root, "usr/bin/longpoll"), filepath.Join(root, "etc/longpoll/longpoll.toml"), unit)

	// The same build again gives the same bytes.
	b2 := *b
	b2.Out = t.TempDir()
	paths2, err := Deb(&b2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range paths {
		if fileHash(t, paths[i]) != fileHash(t, paths2[i]) {
			t.Errorf("%s differs between two builds", filepath.Base(paths[i]))
		}
	}

	t.Run("install", func(t *testing.T) { testDebInstall(t, pkg) })
}

// checkGuardedSystemctl checks that every systemctl line of a
// maintainer script is inside a test for a running systemd.
func checkGuardedSystemctl(t *testing.T, name, script string) {
	t.Helper()
	guarded := false
	depth := 0
	for _, l := range strings.Split(script, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "if [ -d /run/systemd/system ]") || strings.Contains(l, "&& [ -d /run/systemd/system ]"):
			guarded, depth = true, 1
		case guarded && strings.HasPrefix(l, "if "):
			depth++
		case guarded && l == "fi":
			depth--
			if depth == 0 {
				guarded = false
			}
		case strings.HasPrefix(l, "systemctl ") && !guarded:
			t.Errorf("%s: systemctl outside a test for /run/systemd/system: %q", name, l)
		}
	}
}

// checkStopTimeout checks that the unit's TimeoutStopSec is above the
// drain delay plus the shutdown grace that the configuration file gives.
func checkStopTimeout(t *testing.T, bin, conf, unit string) {
	t.Helper()
	cmd := exec.Command(bin, "config", "--config", conf, "--json")
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no LONGPOLL_ variable of the test's
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("longpoll config --json: %v", err)
	}
	var cfg struct {
		Settings []struct {
			Key   string
			Value any
		}
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("longpoll config --json: %v\n%s", err, out)
	}
	var sum time.Duration
	for _, s := range cfg.Settings {
		if s.Key == "drain-delay" || s.Key == "shutdown-grace" {
			d, err := time.ParseDuration(fmt.Sprint(s.Value))
			if err != nil {
				t.Fatal(err)
			}
			sum += d
		}
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)s$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("the unit has no TimeoutStopSec=<n>s")
	}
	n, _ := strconv.Atoi(m[1])
	if stop := time.Duration(n) * time.Second; sum == 0 || stop <= sum {
		t.Errorf("TimeoutStopSec=%v is not above drain-delay + shutdown-grace = %v", stop, sum)
	}
}

// testDebInstall installs the package on this machine, checks the
// service's files, its unit with systemd-analyze, and the installed
// server, and purges it, leaving the machine as it was.
func testDebInstall(t *testing.T, pkg string) {
	if os.Getenv("CI") != "true" && os.Getenv("LONGPOLL_TEST_DEB_INSTALL") != "1" {
		t.Skip("installs the package on this machine: set LONGPOLL_TEST_DEB_INSTALL=1 (CI=true does) to run it")
	}
	if os.Geteuid() != 0 {
		t.Skip("dpkg -i needs root")
	}
	needCommand(t, "dpkg")
	if exec.Command("dpkg", "-s", "longpoll").Run() == nil {
		t.Skip("a longpoll package is installed already: not touching it")
	}
	for _, p := range []string{"/etc/longpoll", "/var/lib/longpoll"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s exists already: not touching it", p)
		}
	}
	if _, err := user.Lookup("longpoll"); err == nil {
		t.Skip("a user longpoll exists already: not touching it")
	}
	analyze := needCommand(t, "systemd-analyze")
	before := map[string][]byte{}
	for _, p := range []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"} {
		before[p], _ = os.ReadFile(p)
	}

	mustRun(t, "dpkg", "-i", pkg)
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "--purge", "longpoll").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge longpoll: %v\n%s", err, out)
		}
		for p, b := range before {
			if now, _ := os.ReadFile(p); !bytes.Equal(now, b) {
				t.Errorf("%s differs after the purge", p)
			}
		}
		for _, p := range []string{"/etc/longpoll", "/var/lib/longpoll", "/lib/systemd/system/longpoll.service",
			"/etc/systemd/system/multi-user.target.wants/longpoll.service", "/etc/systemd/system/longpoll.service",
			"/var/lib/systemd/deb-systemd-helper-enabled/longpoll.service.dsh-also",
			"/var/lib/systemd/deb-systemd-helper-masked/longpoll.service", "/usr/bin/longpoll"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s is left after the purge", p)
			}
		}
	})

	u, err := user.Lookup("longpoll")
	if err != nil {
		t.Fatalf("postinst made no user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid >= 1000 || u.HomeDir != "/nonexistent" {
		t.Errorf("user longpoll: uid %d, home %s; want a system user without a home", uid, u.HomeDir)
	}
	g, err := user.LookupGroup("longpoll")
	if err != nil || g.Gid != u.Gid {
		t.Errorf("group longpoll: %+v, %v; want the user's own group", g, err)
	}
	st, err := os.Stat("/etc/longpoll/jwt-secret")
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o640 || sys.Uid != 0 || int(sys.Gid) != gid {
		t.Errorf("/etc/longpoll/jwt-secret: %v %d:%d, want -rw-r----- root:longpoll", st.Mode(), sys.Uid, sys.Gid)
	}
	if secret, _ := os.ReadFile("/etc/longpoll/jwt-secret"); !regexp.MustCompile(`^[0-9a-f]{64}\n$`).Match(secret) {
		t.Errorf("the secret is not 32 random bytes in hex: %d bytes", len(secret))
	}

	unit := "/lib/systemd/system/longpoll.service"
	if out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput(); err != nil || strings.Contains(string(out), "longpoll") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(analyze, "security", "--offline=true", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for longpoll.service: (\d+\.\d+) (\w+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security --offline=true: exposure %s %s (docs/deployment.md)", m[1], m[2])
	if score > 2.0 {
		t.Errorf("exposure level %.1f, above 2.0", score)
	}

	if out := mustRun(t, "/usr/bin/longpoll", "config", "--check", "/etc/longpoll/longpoll.toml"); !strings.Contains(out, "ok") {
		t.Errorf("longpoll config --check: %s", out)
	}

	// The installed server, with the installed configuration, as the
	// service's user.
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command("/usr/bin/longpoll", "serve", "--config", "/etc/longpoll/longpoll.toml", "--addr", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	stderr := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	waitReady(t, base+"/readyz", exited, stderr)
	tok := strings.TrimSpace(mustRun(t, "/usr/bin/longpoll", "token", "--secret-file", "/etc/longpoll/jwt-secret", "--subscribe", "news"))
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {tok, http.StatusOK}} {
		req, _ := http.NewRequest("GET", base+"/v1/poll?topic=news&timeout=1", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("a poll with a token: %t: %d, want %d", tc.token != "", resp.StatusCode, tc.want)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20s of SIGTERM:\n%s", stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d:\n%s", code, stderr)
	}
	if entries, err := os.ReadDir("/var/lib/longpoll"); err != nil || len(entries) == 0 {
		t.Errorf("the server wrote nothing to /var/lib/longpoll (%v)", err)
	}
}

func TestDebVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1.2.3", "v1.2.3"}, // nfpm drops the v, and makes -rc1 ~rc1
		{"1.2.3", "1.2.3"},
		{"dev", "0.0.0~dev"},
		{"main-4f3e", "0.0.0~main.4f3e"},
	} {
		if got := debVersion(tc.in); got != tc.want {
			t.Errorf("debVersion(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
