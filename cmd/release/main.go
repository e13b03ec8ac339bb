// Command release makes longpoll's release into dist/: the binary for
// every supported system, an archive of each, the container image, the
// Debian packages and SHA256SUMS. It needs only the Go toolchain and git,
// and no network once the module cache holds the dependencies.
//
//	go run ./cmd/release                            # HEAD's tag, on a clean tree
//	go run ./cmd/release --snapshot                 # v0.0.0-dev+<commit12>, changes allowed
//	go run ./cmd/release --snapshot --build-only    # only cross-build the binaries (CI)
//
// See package internal/release and docs/deployment.md, "Cutting a release".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/longpoll/longpoll/internal/release"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "release:", strings.TrimPrefix(err.Error(), "release: "))
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	version := fs.String("version", "", "the release's version, vMAJOR.MINOR.PATCH (default: the tag at HEAD; a snapshot: v0.0.0-dev+<commit12>)")
	snapshot := fs.Bool("snapshot", false, "allow a tree with changes and a commit with no tag")
	out := fs.String("out", "dist", "the directory to write into; it must be empty or not exist")
	clean := fs.Bool("clean", false, "remove --out first")
	buildOnly := fs.Bool("build-only", false, "only cross-build the binaries into --out/bin, as CI does")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if *clean {
		if err := os.RemoveAll(*out); err != nil {
			return err
		}
	}
	b, err := release.New(ctx, release.Options{Root: root, Out: *out, Version: *version, Snapshot: *snapshot, Log: os.Stderr})
	if err != nil {
		return err
	}
	if *buildOnly {
		return b.CrossBuild(ctx)
	}
	paths, err := release.Release(ctx, b)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if rel, err := filepath.Rel(b.Out, p); err == nil {
			p = filepath.Join(*out, rel)
		}
		fmt.Println(p)
	}
	return nil
}
