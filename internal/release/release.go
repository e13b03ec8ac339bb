// Package release makes longpoll's release from a checkout, offline and
// reproducibly: the longpoll binary for every supported system, an archive
// of each with the license and the docs, the container image and the
// Debian packages, and a SHA256SUMS file over all of them. cmd/release is
// its command line:
//
//	go run ./cmd/release                      # at a tag, on a clean tree
//	go run ./cmd/release --snapshot           # anywhere: v0.0.0-dev+<commit12>
//	sha256sum -c SHA256SUMS                   # in dist/
//
// The same commit gives the same bytes: the binaries are built with
// -trimpath and stamped with the commit's time, not the clock's, and every
// file in an archive has that time, owner 0 and a fixed order.
package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Platforms are the systems a release builds for, as GOOS/GOARCH.
var Platforms = []string{
	"linux/amd64", "linux/arm64",
	"darwin/amd64", "darwin/arm64",
	"windows/amd64",
	"freebsd/amd64",
}

// cliPackage holds the variables that the linker's -X sets.
const cliPackage = "github.com/longpoll/longpoll/internal/cli"

// Build is one release: what it is made from, where it goes, and what
// has been built so far.
type Build struct {
	Version string    // v1.2.3, or v0.0.0-dev+<commit12> for a snapshot
	Commit  string    // the full hash of the commit built
	Time    time.Time // the commit's time, in UTC: every timestamp of the release
	Out     string    // the directory the artefacts are written to
	Root    string    // the repository's root, the module's directory

	// Binaries maps "os/arch" to the path of the longpoll binary built for
	// it; CrossBuild fills it.
	Binaries map[string]string

	// Log, when not nil, gets one line per step.
	Log io.Writer
}

// Options name the release to make; New reads the rest from git.
type Options struct {
	Root, Out string
	// Version, when set, names the release; otherwise the tag at HEAD
	// does, or, for a snapshot, v0.0.0-dev+<commit12>.
	Version string
	// Snapshot allows a dirty tree and a commit with no tag.
	Snapshot bool
	Log      io.Writer
}

// validVersion is a semantic version with its "v": what a tag, an archive's
// name and the container image's tag can all hold.
var validVersion = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// New resolves the release to make from the checkout at opts.Root. Unless
// opts.Snapshot, it refuses a tree with changes (untracked files
// included, as Go's vcs.modified counts them) and a commit that the
// version's tag does not name.
func New(ctx context.Context, opts Options) (*Build, error) {
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	out, err := filepath.Abs(opts.Out)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	b := &Build{Root: root, Out: out, Log: opts.Log, Binaries: map[string]string{}}
	if b.Commit, err = git(ctx, root, "rev-parse", "HEAD"); err != nil {
		return nil, err
	}
	ct, err := git(ctx, root, "log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return nil, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("release: the commit's time %q: %w", ct, err)
	}
	b.Time = time.Unix(sec, 0).UTC()
	status, err := git(ctx, root, "status", "--porcelain")
	if err != nil {
		return nil, err
	}
	dirty := status != ""
	tags, err := git(ctx, root, "tag", "--points-at", "HEAD")
	if err != nil {
		return nil, err
	}
	if !opts.Snapshot {
		if dirty {
			return nil, fmt.Errorf("release: the tree has changes (git status):\n%s\ncommit them, or pass --snapshot", status)
		}
		if tags == "" {
			return nil, fmt.Errorf("release: no tag names %s: tag it (git tag v1.2.3), or pass --snapshot", b.Commit[:12])
		}
	}
	switch {
	case opts.Version != "":
		b.Version = opts.Version
		if !opts.Snapshot && !hasLine(tags, b.Version) {
			return nil, fmt.Errorf("release: the tag %s does not name %s (its tags: %s)", b.Version, b.Commit[:12], strings.ReplaceAll(tags, "\n", " "))
		}
	case tags != "" && !dirty:
		// git describe's choice when several tags name the commit.
		if b.Version, err = git(ctx, root, "describe", "--tags", "--exact-match", "HEAD"); err != nil {
			return nil, err
		}
	default:
		// A snapshot: with changes, a tag at HEAD would misname the build.
		b.Version = "v0.0.0-dev+" + b.Commit[:12]
	}
	if !validVersion.MatchString(b.Version) {
		return nil, fmt.Errorf("release: version %q is not vMAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]", b.Version)
	}
	return b, nil
}

func hasLine(lines, s string) bool {
	for l := range strings.SplitSeq(lines, "\n") {
		if l == s {
			return true
		}
	}
	return false
}

// git runs git in dir and returns its output, trimmed.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("release: git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// LDFlags is the linker's -ldflags value that names the build in the
// binary: longpoll version, the admin API's node and the
// longpoll_build_info metric all show it. BuildTime is the commit's time,
// so that building the same commit again gives the same bytes.
func (b *Build) LDFlags() string {
	return fmt.Sprintf("-s -w -X %[1]s.Version=%[2]s -X %[1]s.Commit=%[3]s -X %[1]s.BuildTime=%[4]s",
		cliPackage, b.Version, b.Commit, b.Time.Format(time.RFC3339))
}

// GoBuild returns the go command that builds cmd/longpoll for platform
// ("os/arch") into path, as the release does: no cgo, -trimpath, the
// ldflags, and whatever the environment says, the baseline instruction
// sets and GOFLAGS=-buildvcs=false (the ldflags name the commit; the
// toolchain's own stamp would differ with the state of the work tree). CI cross-builds with the same command (cmd/release
// --build-only), so that it shares the build cache with the release's
// test.
func (b *Build) GoBuild(ctx context.Context, platform, path string) *exec.Cmd {
	goos, goarch, _ := strings.Cut(platform, "/")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", b.LDFlags(), "-o", path, "./cmd/longpoll")
	cmd.Dir = b.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-buildvcs=false")
	return cmd
}

// binaryName is longpoll's file name on goos.
func binaryName(goos string) string {
	if goos == "windows" {
		return "longpoll.exe"
	}
	return "longpoll"
}

// CrossBuild builds the binary of every platform into Out/bin/<os>_<arch>/
// and records it in Binaries. Two builds run at once: each is mostly one
// core's linking once the packages are in the build cache.
func (b *Build) CrossBuild(ctx context.Context) error {
	type result struct {
		platform, path string
		err            error
	}
	results := make([]result, len(Platforms))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, p := range Platforms {
		goos, goarch, _ := strings.Cut(p, "/")
		path := filepath.Join(b.Out, "bin", goos+"_"+goarch, binaryName(goos))
		results[i] = result{platform: p, path: path}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			out, err := b.GoBuild(ctx, p, path).CombinedOutput()
			if err != nil {
				results[i].err = fmt.Errorf("release: building %s: %w\n%s", p, err, out)
				return
			}
			b.logf("built %s in %.1fs", p, time.Since(start).Seconds())
		})
	}
	wg.Wait()
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		b.Binaries[r.platform] = r.path
	}
	return errors.Join(errs...)
}

func (b *Build) logf(format string, a ...any) {
	if b.Log != nil {
		fmt.Fprintf(b.Log, format+"\n", a...)
	}
}

// Release makes the whole release into Out, which must be empty or not
// exist: the binaries, their archives, the container image, the Debian
// packages, then SHA256SUMS over every one of them. It returns the paths
// of the artefacts, SHA256SUMS last.
func Release(ctx context.Context, b *Build) ([]string, error) {
	if ents, err := os.ReadDir(b.Out); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("release: %s is not empty", b.Out)
	}
	b.logf("release %s of %s (%s)", b.Version, b.Commit, b.Time.Format(time.RFC3339))
	if err := b.CrossBuild(ctx); err != nil {
		return nil, err
	}
	artefacts, err := b.Archives()
	if err != nil {
		return nil, err
	}
	for _, step := range []struct {
		name string
		fn   func(*Build) ([]string, error)
	}{{"image", Image}, {"deb", Deb}} {
		start := time.Now()
		paths, err := step.fn(b)
		if err != nil {
			return nil, err
		}
		if len(paths) > 0 {
			b.logf("%s: %d artefacts in %.1fs", step.name, len(paths), time.Since(start).Seconds())
		}
		artefacts = append(artefacts, paths...)
	}
	sums, err := WriteChecksums(b.Out, artefacts)
	if err != nil {
		return nil, err
	}
	return append(artefacts, sums), nil
}
