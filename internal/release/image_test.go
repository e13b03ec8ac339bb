//go:build linux

package release

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pkgTime is the build time of the test builds: a whole second, as
// tar and ar keep.
var pkgTime = time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC)

// buildLinux builds cmd/longpoll for linux/arch with the release's own
// go command (Build.GoBuild: static, -trimpath), so that it shares the
// build cache with the release's other tests, and returns its path.
func buildLinux(t *testing.T, arch string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	b := &Build{Version: "v1.2.3", Commit: "0123456789abcdef0123456789abcdef01234567", Time: pkgTime, Root: root}
	out := filepath.Join(t.TempDir(), "longpoll-linux-"+arch)
	if o, err := b.GoBuild(t.Context(), "linux/"+arch, out).CombinedOutput(); err != nil {
		t.Fatalf("go build for linux/%s: %v\n%s", arch, err, o)
	}
	return out
}

func testBuild(t *testing.T, binaries map[string]string) *Build {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return &Build{Version: "v1.2.3", Commit: "0123456789abcdef0123456789abcdef01234567", Time: pkgTime,
		Out: t.TempDir(), Root: root, Binaries: binaries}
}

// httpc makes the tests' requests, one connection each, so that none
// stays open after a test.
var httpc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// freePort returns a loopback port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitReady polls url until it answers 200, the process exits, or 20 s
// pass.
func waitReady(t *testing.T, url string, exited <-chan struct{}, stderr *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("the server exited before it was ready:\n%s", stderr)
		default:
		}
		resp, err := httpc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not 200 within 20s:\n%s", url, stderr)
}

func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary for two platforms")
	}
	amd64, arm64 := buildLinux(t, "amd64"), buildLinux(t, "arm64")
	b := testBuild(t, map[string]string{"linux/amd64": amd64, "linux/arm64": arm64})
	paths, err := Image(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Fatalf("paths %q, want the layout and the tarball", paths)
	}
	dir, tarPath := paths[0], paths[1]

	// The layout: index.json names one image index by the version, which
	// holds one image per platform.
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	rootManifest, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(rootManifest.Manifests) != 1 {
		t.Fatalf("index.json: %d manifests, want 1", len(rootManifest.Manifests))
	}
	if got := rootManifest.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; got != "v1.2.3" {
		t.Errorf("index.json ref.name %q", got)
	}
	idx, err := root.ImageIndex(rootManifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	images := map[string]v1.Image{}
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		platforms = append(platforms, d.Platform.String())
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		images[d.Platform.Architecture] = img
	}
	if want := []string{"linux/amd64", "linux/arm64/v8"}; !slices.Equal(platforms, want) {
		t.Errorf("platforms %q, want %q", platforms, want)
	}

	for arch, img := range images {
		t.Run("config "+arch, func(t *testing.T) { checkImageConfig(t, img, arch) })
	}
	// Each image holds its own platform's binary.
	for arch, bin := range map[string]string{"amd64": amd64, "arm64": arm64} {
		files, _ := extractImage(t, images[arch], "")
		want, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if got := files["usr/local/bin/longpoll"]; !bytes.Equal(got, want) {
			t.Errorf("%s: the binary in the image is not the linux/%s build (%d bytes, want %d)", arch, arch, len(got), len(want))
		}
	}

	// The tarball: the amd64 image, tagged for docker load.
	tag, err := name.NewTag("ghcr.io/longpoll/longpoll:v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := digestOf(t, fromTar.ConfigName), digestOf(t, images["amd64"].ConfigName); got != want {
		t.Errorf("tarball config %s, want the layout's amd64 config %s", got, want)
	}
	checkDockerManifest(t, tarPath)

	// The same build again gives the same bytes.
	b2 := *b
	b2.Out = t.TempDir()
	paths2, err := Image(&b2)
	if err != nil {
		t.Fatal(err)
	}
	if a, c := fileHash(t, filepath.Join(dir, "index.json")), fileHash(t, filepath.Join(paths2[0], "index.json")); a != c {
		t.Error("index.json differs between two builds")
	}
	if a, c := fileHash(t, tarPath), fileHash(t, paths2[1]); a != c {
		t.Error("the tarball differs between two builds")
	}

	// Run the image's binary as the image would, from its extracted files.
	rootfs := t.TempDir()
	_, headers := extractImage(t, images["amd64"], rootfs)
	checkImageFiles(t, rootfs, headers)
	cf, err := images["amd64"].ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	runImage(t, rootfs, cf.Config)
}

func digestOf(t *testing.T, f func() (v1.Hash, error)) v1.Hash {
	t.Helper()
	h, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func checkImageConfig(t *testing.T, img v1.Image, arch string) {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !cf.Created.Time.Equal(pkgTime) {
		t.Errorf("created %v, want the build time %v", cf.Created.Time, pkgTime)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/longpoll"}) {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
	if !slices.Equal(c.Cmd, []string{"serve"}) {
		t.Errorf("cmd %q", c.Cmd)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q", c.User)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok || len(c.Volumes) != 1 {
		t.Errorf("volumes %v", c.Volumes)
	}
	if c.Healthcheck != nil {
		t.Errorf("a healthcheck: %+v", c.Healthcheck)
	}
	for _, e := range []string{"LONGPOLL_ADDR=0.0.0.0:8080", "LONGPOLL_DATA_DIR=/data"} {
		if !slices.Contains(c.Env, e) {
			t.Errorf("env %q lacks %s", c.Env, e)
		}
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/longpoll/longpoll",
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.licenses": "MIT",
		"org.opencontainers.image.created":  "2026-12-05T09:30:00Z",
		"org.opencontainers.image.title":    "longpoll",
	} {
		if got := c.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 || len(cf.History) != 1 || !cf.History[0].Created.Time.Equal(pkgTime) {
		t.Errorf("%d layers, history %+v: want one layer made at the build time", len(layers), cf.History)
	}
}

// extract reads the image's files; with dir, it also writes them there
// (owners aside, which it returns with the headers).
func extractImage(t *testing.T, img v1.Image, dir string) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files, headers := map[string][]byte{}, map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		headers[name] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[name] = b
		}
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.WriteFile(p, files[name], os.FileMode(h.Mode)&0o777); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: unexpected type %c", h.Name, h.Typeflag)
		}
	}
	return files, headers
}

func checkImageFiles(t *testing.T, rootfs string, headers map[string]*tar.Header) {
	t.Helper()
	for name, h := range headers {
		if !h.ModTime.Equal(pkgTime) {
			t.Errorf("%s: mtime %v, want the build time", name, h.ModTime)
		}
	}
	for name, want := range map[string]struct {
		mode     int64
		uid, gid int
	}{
		"usr/local/bin/longpoll":            {0o755, 0, 0},
		"etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0},
		"etc/passwd":                        {0o644, 0, 0},
		"etc/group":                         {0o644, 0, 0},
		"data":                              {0o755, 65532, 65532},
	} {
		h, ok := headers[name]
		if !ok {
			t.Errorf("%s: missing", name)
			continue
		}
		if h.Mode&0o7777 != want.mode || h.Uid != want.uid || h.Gid != want.gid {
			t.Errorf("%s: mode %o, owner %d:%d; want %o, %d:%d", name, h.Mode, h.Uid, h.Gid, want.mode, want.uid, want.gid)
		}
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(rootfs, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if !strings.Contains(read("etc/passwd"), "\nnonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot 65532:\n%s", read("etc/passwd"))
	}
	if !strings.Contains(read("etc/group"), "\nnonroot:x:65532:") {
		t.Errorf("/etc/group has no nonroot 65532:\n%s", read("etc/group"))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(read("etc/ssl/certs/ca-certificates.crt"))) {
		t.Error("the CA bundle holds no certificate")
	}
}

// runImage runs the extracted binary with the image's entrypoint, command
// and environment (nothing from the test's own), as the image's user when
// the test runs as root.
func runImage(t *testing.T, rootfs string, c v1.Config) {
	asRoot := os.Geteuid() == 0
	if !asRoot {
		t.Log("not root: the image's binary runs as this user, not as uid 65532")
	}
	// The image's user must reach the binary and the files it is given.
	reachable(t, rootfs)
	own := func(p string) {
		if asRoot {
			if err := os.Chown(p, 65532, 65532); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := func(t *testing.T, env map[string]string) (*exec.Cmd, *bytes.Buffer, chan struct{}) {
		t.Helper()
		args := append(append([]string{}, c.Entrypoint...), c.Cmd...)
		cmd := exec.Command(filepath.Join(rootfs, args[0]), args[1:]...)
		kept := map[string]bool{}
		for _, e := range c.Env {
			k, _, _ := strings.Cut(e, "=")
			if v, ok := env[k]; ok {
				cmd.Env = append(cmd.Env, k+"="+v)
				kept[k] = true
				continue
			}
			cmd.Env = append(cmd.Env, e)
		}
		for k, v := range env {
			if !kept[k] {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		cmd.Dir = rootfs
		if asRoot {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		}
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
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		return cmd, stderr, exited
	}
	stop := func(t *testing.T, cmd *exec.Cmd, exited chan struct{}, stderr *bytes.Buffer) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Fatalf("no exit within 20s of SIGTERM:\n%s", stderr)
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit status %d after SIGTERM:\n%s", code, stderr)
		}
	}
	dataDir := func(t *testing.T) string {
		d := t.TempDir()
		reachable(t, filepath.Dir(d))
		own(d)
		return d
	}

	t.Run("jwt", func(t *testing.T) {
		secret := filepath.Join(t.TempDir(), "jwt-secret")
		if err := os.WriteFile(secret, []byte(strings.Repeat("s", 48)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		own(secret)
		reachable(t, filepath.Dir(secret))
		port := freePort(t)
		data := dataDir(t)
		cmd, stderr, exited := start(t, map[string]string{
			"LONGPOLL_ADDR": fmt.Sprintf("127.0.0.1:%d", port), "LONGPOLL_DATA_DIR": data,
			"LONGPOLL_AUTH": "jwt", "LONGPOLL_JWT_SECRET_FILE": secret,
		})
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), exited, stderr)
		// A poll without a token is refused: the server is not open.
		resp, err := httpc.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/poll?topic=news&timeout=1", port))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a poll without a token: %d, want 401", resp.StatusCode)
		}
		stop(t, cmd, exited, stderr)
		// The disk store went to LONGPOLL_DATA_DIR, written by the image's user.
		entries, err := os.ReadDir(data)
		if err != nil || len(entries) == 0 {
			t.Errorf("nothing written to LONGPOLL_DATA_DIR (%v)", err)
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			if st := info.Sys().(*syscall.Stat_t); asRoot && st.Uid != 65532 {
				t.Errorf("%s owned by uid %d, want 65532", e.Name(), st.Uid)
			}
		}
	})

	t.Run("refuses to serve open", func(t *testing.T) {
		// The image's own address, 0.0.0.0:8080: the check comes before
		// anything listens.
		cmd, stderr, exited := start(t, map[string]string{"LONGPOLL_DATA_DIR": dataDir(t)})
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Fatalf("still running after 20s:\n%s", stderr)
		}
		if cmd.ProcessState.ExitCode() == 0 {
			t.Fatalf("exit status 0:\n%s", stderr)
		}
		if !strings.Contains(stderr.String(), "--allow-unauthenticated") || !strings.Contains(stderr.String(), "0.0.0.0:8080") {
			t.Errorf("the refusal does not say why:\n%s", stderr)
		}
	})

	t.Run("allow unauthenticated", func(t *testing.T) {
		port := freePort(t)
		cmd, stderr, exited := start(t, map[string]string{
			"LONGPOLL_ADDR": fmt.Sprintf("0.0.0.0:%d", port), "LONGPOLL_DATA_DIR": dataDir(t),
			"LONGPOLL_ALLOW_UNAUTHENTICATED": "true",
		})
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), exited, stderr)
		stop(t, cmd, exited, stderr)
		if !strings.Contains(stderr.String(), "without authentication") {
			t.Errorf("no warning about serving without authentication:\n%s", stderr)
		}
	})
}

// reachable opens dir and the temporary directories above it to every
// user, for a process run as another user.
func reachable(t *testing.T, dir string) {
	t.Helper()
	for p := dir; strings.HasPrefix(p, os.TempDir()+string(filepath.Separator)); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// checkDockerManifest reads the tarball's manifest.json, which docker
// load reads: one image, tagged with the version.
func checkDockerManifest(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json: %v", err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"ghcr.io/longpoll/longpoll:v1.2.3"}) {
			t.Errorf("manifest.json: %+v", m)
		}
		return
	}
}

func TestImageTag(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1.2.3", "v1.2.3"},
		{"v1.2.3-rc.1+build.5", "v1.2.3-rc.1-build.5"},
		{"", "v"},
		{".x", "v.x"},
		{strings.Repeat("a", 200), strings.Repeat("a", 128)},
	} {
		got := imageTag(tc.in)
		if got != tc.want {
			t.Errorf("imageTag(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if _, err := name.NewTag("ghcr.io/longpoll/longpoll:"+got, name.StrictValidation); err != nil {
			t.Errorf("imageTag(%q) = %q: %v", tc.in, got, err)
		}
	}
}
