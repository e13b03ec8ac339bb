// Package cli implements the longpoll command: flag and environment
// parsing, wiring of the parts, and signal handling. End-to-end tests call
// Run, the same function the binary uses.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
)

// Version, Commit and BuildTime name the build. The release sets them
// (cmd/release):
//
//	-ldflags "-X github.com/longpoll/longpoll/internal/cli.Version=v1.2.3
//	          -X github.com/longpoll/longpoll/internal/cli.Commit=<full sha>
//	          -X github.com/longpoll/longpoll/internal/cli.BuildTime=<RFC 3339>"
//
// Left empty, Commit and BuildTime are taken from what the Go toolchain
// recorded of the checkout (its revision and commit time).
var (
	Version   = "dev"
	Commit    = ""
	BuildTime = ""
)

// Exit codes a script can rely on.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// IO is where a command reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Main runs the command with the process's own streams and signals: the
// first SIGINT or SIGTERM stops the command gracefully, a second one exits
// at once.
func Main(args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "longpoll: second signal, exiting at once")
		os.Exit(ExitError)
	}()
	return Run(ctx, args, IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, io IO) int
}

func commands() []command {
	return []command{
		{"serve", "run the long-polling server", runServe},
		{"publish", "publish a message, or one per line of stdin", runPublish},
		{"subscribe", "print the messages of topics as JSON lines", runSubscribe},
		{"bench", "measure a server: capacity, fanout, throughput, burst", runBench},
		{"backup", "copy a disk store consistently, even while its server runs", runBackup},
		{"token", "print a signed access token, for development and scripts", runToken},
		{"config", "print serve's settings and where each comes from, or check a config file", runConfig},
		{"admin", "administer a running server: topics, disconnect, nodes, drain", runAdmin},
		{"completion", "print a shell's completion script: bash, zsh or fish", runCompletion},
		{"man", "print the man page, longpoll(1), in roff", runMan},
		{"version", "print the version and build information", runVersion},
	}
}

// Run runs the subcommand named by args[0] until it finishes or ctx is
// cancelled, and returns the process exit code.
func Run(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 {
		usage(io.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(io.Stdout)
		return ExitOK
	case "--version", "-version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[1:], io)
		}
	}
	fmt.Fprintf(io.Stderr, "longpoll: unknown command %q\n\n", name)
	usage(io.Stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "longpoll: an HTTP long-polling messaging server\n\nUsage:\n  longpoll <command> [flags] [arguments]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"longpoll <command> --help\" for a command's flags. Every flag --foo-bar\ncan also be set with the environment variable LONGPOLL_FOO_BAR; the flag wins.")
}

func runVersion(_ context.Context, args []string, io IO) int {
	fs := newFlagSet("version", "", io)
	if code, ok := parse(fs, args, nil, io); !ok {
		return code
	}
	fmt.Fprintln(io.Stdout, versionLine())
	return ExitOK
}

func versionLine() string {
	b := buildInfo()
	extra := []string{runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH}
	if b.commit != "" {
		extra = append(extra, "commit "+b.commit)
	}
	if b.built != "" {
		extra = append(extra, "built "+b.built)
	}
	if b.modified {
		extra = append(extra, "modified")
	}
	return "longpoll " + b.version + " (" + strings.Join(extra, ", ") + ")"
}

// build is what the binary knows of its own build.
type build struct {
	version, commit, built string
	modified               bool
}

// pseudoVersion matches the end of a version the Go toolchain made up
// for a commit that no tag names: v0.0.0-20261205091730-4484846abcde.
var pseudoVersion = regexp.MustCompile(`[-.]\d{14}-[0-9a-f]{12}$`)

// buildInfo returns the values set with -ldflags (Version, Commit,
// BuildTime), and for each one left unset what the Go toolchain recorded:
// the module's version when the checkout was at a tag, the commit, and the
// commit's time. An untagged build with a known commit is
// v0.0.0-dev+<commit12>, as the release's snapshots are.
func buildInfo() build {
	b := build{version: Version, commit: Commit, built: BuildTime}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var revision, when string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if b.commit == "" {
			b.commit = revision
		}
		if b.built == "" {
			b.built = when
		}
		b.modified = modified && b.commit == revision
		if v := strings.TrimSuffix(bi.Main.Version, "+dirty"); b.version == "dev" && v != "" && v != "(devel)" && !pseudoVersion.MatchString(v) {
			b.version = v
		}
	}
	if b.version == "dev" && len(b.commit) >= 12 {
		b.version = "v0.0.0-dev+" + b.commit[:12]
	}
	return b
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, positional string, io IO) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	noteFlagSet(fs, io) // for the man page and the completions (completion.go)
	fs.Usage = func() {
		fmt.Fprintf(io.Stderr, "Usage: longpoll %s [flags] %s\n\nFlags (each also LONGPOLL_<NAME> in the environment):\n", name, positional)
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(io.Stderr, "  --%-22s %s (default %s; %s)\n", f.Name, f.Usage, def, envName(f.Name))
		})
	}
	return fs
}

func envName(flagName string) string {
	return "LONGPOLL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args, allowing flags before and after positional arguments
// ("--" ends the flags), then fills every flag not given on the command
// line from its LONGPOLL_ variable, read with getenv (os.LookupEnv when
// nil). It returns the positional arguments.
func parse(fs *flag.FlagSet, args []string, getenv func(string) (string, bool), io IO) (int, bool) {
	_, code, ok := parseArgs(fs, args, getenv, io)
	return code, ok
}

func parseArgs(fs *flag.FlagSet, args []string, getenv func(string) (string, bool), io IO) ([]string, int, bool) {
	pos, _, code, ok := parseOrigins(fs, args, getenv, io)
	return pos, code, ok
}

// parseOrigins is parseArgs, and also tells where each flag it set comes
// from: fromFlag (the command line) or fromEnv.
func parseOrigins(fs *flag.FlagSet, args []string, getenv func(string) (string, bool), io IO) ([]string, map[string]string, int, bool) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, ExitOK, false
			}
			return nil, nil, ExitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	from := map[string]string{}
	fs.Visit(func(f *flag.Flag) { from[f.Name] = fromFlag })
	var bad []string
	fs.VisitAll(func(f *flag.Flag) {
		if from[f.Name] != "" {
			return
		}
		if v, ok := getenv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				bad = append(bad, fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err))
			}
			from[f.Name] = fromEnv
		}
	})
	if len(bad) > 0 {
		sort.Strings(bad)
		fmt.Fprintf(io.Stderr, "longpoll %s: invalid environment: %s\n", fs.Name(), strings.Join(bad, "; "))
		return nil, nil, ExitUsage, false
	}
	return pos, from, ExitOK, true
}

// usageError prints a usage problem and returns ExitUsage.
func usageError(io IO, cmd, format string, a ...any) int {
	fmt.Fprintf(io.Stderr, "longpoll %s: %s\n", cmd, fmt.Sprintf(format, a...))
	return ExitUsage
}
