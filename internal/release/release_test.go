package release

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository's root, seen from this package's directory.
const repoRoot = "../.."

// The npm package ships js/LICENSE: it must be the repository's.
func TestLicenseCopies(t *testing.T) {
	root, err := os.ReadFile(filepath.Join(repoRoot, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(repoRoot, "js", "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, js) {
		t.Error("js/LICENSE differs from LICENSE: cp LICENSE js/LICENSE")
	}
	if !bytes.Contains(root, []byte("MIT License")) || !bytes.Contains(root, []byte("Copyright (c) 2026 The longpoll authors")) {
		t.Error("LICENSE is not the MIT license of the longpoll authors")
	}
}

// relGit runs git in dir, for the repositories the tests make.
func relGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@t", "GIT_COMMITTER_DATE=2026-12-01T10:00:00Z", "GIT_AUTHOR_DATE=2026-12-01T10:00:00Z")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// New names a release after its tag, and refuses what a release must not
// be made from, unless it is a snapshot.
func TestNewResolvesVersion(t *testing.T) {
	dir := t.TempDir()
	relGit(t, dir, "init", "-q")
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	relGit(t, dir, "add", "a")
	relGit(t, dir, "commit", "-q", "-m", "a")
	commit := relGit(t, dir, "rev-parse", "HEAD")
	dev := "v0.0.0-dev+" + commit[:12]
	newB := func(version string, snapshot bool) (*Build, error) {
		return New(t.Context(), Options{Root: dir, Out: t.TempDir(), Version: version, Snapshot: snapshot})
	}
	check := func(name string, version string, snapshot bool, want, wantErr string) {
		t.Helper()
		b, err := newB(version, snapshot)
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s: got %v, want an error with %q", name, err, wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case b.Version != want || b.Commit != commit || !b.Time.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)):
			t.Errorf("%s: %s %s %v, want %s %s 2026-12-01T10:00:00Z", name, b.Version, b.Commit, b.Time, want, commit)
		}
	}
	check("untagged", "", false, "", "no tag names")
	check("untagged snapshot", "", true, dev, "")
	check("snapshot with a version", "v1.2.3-rc.1", true, "v1.2.3-rc.1", "")
	check("not a version", "1.2.3", true, "", "is not vMAJOR")
	relGit(t, dir, "tag", "v0.1.0")
	check("tagged", "", false, "v0.1.0", "")
	check("tagged, its version", "v0.1.0", false, "v0.1.0", "")
	check("tagged, another version", "v0.2.0", false, "", "does not name")
	check("tagged snapshot", "", true, "v0.1.0", "")
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("dirty", "", false, "", "the tree has changes")
	check("dirty snapshot", "", true, dev, "")
}

// TestSnapshotRelease makes a whole snapshot release of this checkout, as
// "go run ./cmd/release --snapshot" does, then makes its artefacts again
// from the same binaries: the two must be the same bytes.
func TestSnapshotRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: cross-builds six binaries")
	}
	ctx := t.Context()
	first := snapshot(t, ctx, clone(t))
	paths, err := Release(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Platforms {
		want := filepath.Join(first.Out, ArchiveName(first.Version, p))
		if !slices.Contains(paths, want) {
			t.Errorf("no %s among %v", want, paths)
		}
		files := readArchive(t, want)
		checkArchive(t, first, p, files)
	}
	if got := paths[len(paths)-1]; got != filepath.Join(first.Out, ChecksumsFile) {
		t.Errorf("last artefact %s, want SHA256SUMS", got)
	}
	checkSums(t, first.Out, paths)

	// The binary from the archive names its build in the three places.
	bin := filepath.Join(t.TempDir(), "longpoll")
	data := readArchive(t, filepath.Join(first.Out, ArchiveName(first.Version, "linux/amd64")))[ArchiveDir(first.Version, "linux/amd64")+"/longpoll"]
	if err := os.WriteFile(bin, data.data, 0o755); err != nil {
		t.Fatal(err)
	}
	checkStamped(t, bin, first)

	// Again into another directory, from the same binaries (the Go
	// toolchain builds the same bytes with -trimpath; building all six
	// again would double the test's time): SHA256SUMS, over every
	// artefact, must be the same bytes.
	second := snapshot(t, ctx, first.Root)
	second.Binaries = first.Binaries
	arts, err := second.Archives()
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func(*Build) ([]string, error){Image, Deb} {
		paths, err := step(second)
		if err != nil {
			t.Fatal(err)
		}
		arts = append(arts, paths...)
	}
	if _, err := WriteChecksums(second.Out, arts); err != nil {
		t.Fatal(err)
	}
	a, b := readFile(t, filepath.Join(first.Out, ChecksumsFile)), readFile(t, filepath.Join(second.Out, ChecksumsFile))
	if !bytes.Equal(a, b) {
		t.Errorf("two runs differ:\n%s\n%s", a, b)
	}
}

// clone clones this repository's HEAD: the release is made of committed
// files only, while the work tree may change under the test.
func clone(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	relGit(t, repoRoot, "clone", "-q", "--shared", ".", dir)
	return dir
}

func snapshot(t *testing.T, ctx context.Context, root string) *Build {
	t.Helper()
	b, err := New(ctx, Options{Root: root, Out: t.TempDir(), Snapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// archived is a file read back from an archive.
type archived struct {
	data  []byte
	mode  os.FileMode
	mtime time.Time
	owner int // uid and gid, added (tar only)
	order int
}

// readArchive reads every entry of a tar.gz or zip, by name.
func readArchive(t *testing.T, path string) map[string]archived {
	t.Helper()
	files := map[string]archived{}
	if strings.HasSuffix(path, ".zip") {
		zr, err := zip.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		for i, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatalf("%s: %s: %v", path, f.Name, err)
			}
			files[f.Name] = archived{data: data, mode: f.Mode(), mtime: f.Modified, order: i}
		}
		return files
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = archived{data: data, mode: h.FileInfo().Mode(), mtime: h.ModTime, owner: h.Uid + h.Gid, order: i}
	}
	return files
}

// checkArchive checks that an archive holds the binary and the docs, and
// nothing else, under its top directory, in order, with the commit's
// time and no owner.
func checkArchive(t *testing.T, b *Build, platform string, files map[string]archived) {
	t.Helper()
	top := ArchiveDir(b.Version, platform)
	goos, _, _ := strings.Cut(platform, "/")
	want := map[string][]byte{binaryName(goos): readFile(t, b.Binaries[platform])}
	for _, d := range Docs {
		want[d] = readFile(t, filepath.Join(b.Root, d))
	}
	if len(files) != len(want)+1 {
		t.Errorf("%s: %d entries, want %d files and the directory", platform, len(files), len(want))
	}
	if d, ok := files[top+"/"]; !ok || !d.mode.IsDir() || d.order != 0 {
		t.Errorf("%s: no top directory %s/ first", platform, top)
	}
	var names []string
	for name, data := range want {
		f, ok := files[top+"/"+name]
		names = append(names, name)
		if !ok {
			t.Errorf("%s: no %s/%s", platform, top, name)
			continue
		}
		if !bytes.Equal(f.data, data) {
			t.Errorf("%s: %s is not the file it was made from", platform, name)
		}
		wantMode := os.FileMode(0o644)
		if name == binaryName(goos) {
			wantMode = 0o755
		}
		if f.mode != wantMode || !f.mtime.Equal(b.Time) || f.owner != 0 {
			t.Errorf("%s: %s: mode %v, time %v, owner %d; want %v, %v, 0", platform, name, f.mode, f.mtime, f.owner, wantMode, b.Time)
		}
	}
	slices.Sort(names)
	for i, name := range names {
		if files[top+"/"+name].order != i+1 {
			t.Errorf("%s: %s is entry %d, want %d (sorted)", platform, name, files[top+"/"+name].order, i+1)
		}
	}
}

// checkSums checks SHA256SUMS with sha256sum itself, and that it lists
// every artefact.
func checkSums(t *testing.T, out string, paths []string) {
	t.Helper()
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("no sha256sum to check SHA256SUMS with")
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", ChecksumsFile)
	cmd.Dir = out
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, res)
	}
	sums := string(readFile(t, filepath.Join(out, ChecksumsFile)))
	for _, p := range paths[:len(paths)-1] {
		rel, _ := filepath.Rel(out, p)
		if !strings.Contains(sums, "  "+filepath.ToSlash(rel)) {
			t.Errorf("SHA256SUMS does not list %s", rel)
		}
	}
	// A changed byte must show.
	if err := os.WriteFile(paths[0], append(readFile(t, paths[0]), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("sha256sum -c passed a changed archive:\n%s", res)
	}
}

// checkStamped checks that the binary at bin shows b's version, commit
// and time in longpoll version, GET /v1/admin/node and the
// longpoll_build_info metric.
func checkStamped(t *testing.T, bin string, b *Build) {
	t.Helper()
	built := b.Time.Format(time.RFC3339)
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(out))
	for _, want := range []string{"longpoll " + b.Version + " (go1.", "commit " + b.Commit, "built " + built} {
		if !strings.Contains(line, want) {
			t.Errorf("longpoll version: %q, want %q in it", line, want)
		}
	}

	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--store", "memory",
		"--log-format", "json", "--demo=false", "--dashboard=false", "--stats-interval", "0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	admin := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "admin listening" {
				admin <- l.Addr
			}
		}
		close(admin)
	}()
	var addr string
	select {
	case addr = <-admin:
	case <-time.After(20 * time.Second):
	}
	if addr == "" {
		t.Fatal("longpoll serve did not log its admin address")
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, body)
		}
		return string(body)
	}
	var node struct{ Version, Commit, Built string }
	if err := json.Unmarshal([]byte(get("/v1/admin/node")), &node); err != nil {
		t.Fatal(err)
	}
	if node.Version != b.Version || node.Commit != b.Commit || node.Built != built {
		t.Errorf("/v1/admin/node: %+v, want %s %s %s", node, b.Version, b.Commit, built)
	}
	metrics := get("/metrics")
	want := fmt.Sprintf(`commit=%q`, b.Commit)
	var info string
	for l := range strings.SplitSeq(metrics, "\n") {
		if strings.HasPrefix(l, "longpoll_build_info{") {
			info = l
		}
	}
	if !strings.Contains(info, want) || !strings.Contains(info, fmt.Sprintf(`version=%q`, b.Version)) || !strings.HasSuffix(info, " 1") {
		t.Errorf("metric %q, want version %s and commit %s", info, b.Version, b.Commit)
	}
}
