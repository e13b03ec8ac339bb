package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// script writes the completion script of shell to a file and returns its
// path.
func script(t *testing.T, shell string) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteCompletion(&b, shell); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "longpoll."+shell)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func needShell(t *testing.T, shell string) string {
	t.Helper()
	p, err := exec.LookPath(shell)
	if err != nil {
		t.Skipf("%s is not installed (.ci/run installs it): its completion script is not run", shell)
	}
	return p
}

// TestDocCommandsFindEveryCommand checks that the man page and the
// completions see every command and admin command, each with the flags it
// parses.
func TestDocCommandsFindEveryCommand(t *testing.T) {
	cmds, err := docCommands()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]docCommand{}
	walk(docCommand{subs: cmds}, func(c docCommand) { found[c.name()] = c })
	for _, c := range commands() {
		if _, ok := found[c.name]; !ok {
			t.Errorf("command %q missing", c.name)
		}
	}
	for _, ac := range adminCommands() {
		c, ok := found["admin "+ac.name]
		if !ok {
			t.Errorf("admin command %q missing", ac.name)
			continue
		}
		if c.flags == nil || c.flags.Lookup("server") == nil {
			t.Errorf("admin %s: no --server flag", ac.name)
		}
		if c.positional != ac.args {
			t.Errorf("admin %s: positional %q, want %q", ac.name, c.positional, ac.args)
		}
	}
	serve := found["serve"]
	for _, k := range serveKeys() {
		if serve.flags.Lookup(k) == nil {
			t.Errorf("serve: flag --%s missing", k)
		}
	}
	if serve.flags.Lookup(configFlagName) == nil {
		t.Errorf("serve: --%s missing", configFlagName)
	}
	if got := found["publish"].positional; got != "TOPIC [DATA]" {
		t.Errorf("publish: positional %q", got)
	}
}

// TestCompletionScriptsNameEveryFlag checks that each shell's script
// offers every flag of every command.
func TestCompletionScriptsNameEveryFlag(t *testing.T) {
	cmds, err := docCommands()
	if err != nil {
		t.Fatal(err)
	}
	for _, shell := range shells {
		t.Run(shell, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteCompletion(&b, shell); err != nil {
				t.Fatal(err)
			}
			text := b.String()
			walk(docCommand{subs: cmds}, func(c docCommand) {
				for _, f := range flagsOf(c.flags) {
					want := "--" + f.name
					if shell == "fish" {
						want = "-l " + f.name
					}
					if !strings.Contains(text, want) {
						t.Errorf("%s: %s missing", c.name(), want)
					}
				}
			})
		})
	}
	if err := WriteCompletion(new(bytes.Buffer), "tcsh"); err == nil {
		t.Error("tcsh: no error")
	}
}

// TestCompletionBash runs the bash completion function on command lines.
func TestCompletionBash(t *testing.T) {
	bash := needShell(t, "bash")
	p := script(t, "bash")
	for _, tc := range []struct{ line, want string }{
		{"longpoll ser", "serve"},
		{"longpoll serve --max-ho", "--max-hold"},
		{"longpoll serve --addr 0.0.0.0:8080 --max-held-po", "--max-held-polls"},
		{"longpoll publish --id-", "--id-prefix"},
		{"longpoll admin ", "topics disconnect node drain topic"},
		{"longpoll admin topic ", "rm"},
		{"longpoll admin topic rm --t", "--token --token-file"},
		{"longpoll completion ", "bash zsh fish"},
		{"longpoll serve --config ", ""}, // a file: left to complete -o default
		{"longpoll version ", ""},
	} {
		t.Run(tc.line, func(t *testing.T) {
			prog := `source "$1"; read -ra COMP_WORDS <<<"$2"; [[ $2 == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _longpoll; echo "${COMPREPLY[*]}"`
			out, err := exec.Command(bash, "-c", prog, "bash", p, tc.line).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCompletionFish asks fish itself what it would complete.
func TestCompletionFish(t *testing.T) {
	fish := needShell(t, "fish")
	p := script(t, "fish")
	for _, tc := range []struct{ line, want string }{
		{"longpoll ser", "serve"},
		{"longpoll serve --max-ho", "--max-hold"},
		{"longpoll admin topic ", "rm"},
		{"longpoll admin topic rm --ser", "--server"},
		{"longpoll completion ", "bash fish zsh"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			out, err := exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, p, tc.line).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			var words []string
			for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
				w, _, _ := strings.Cut(line, "\t")
				words = append(words, w)
			}
			if got := strings.Join(words, " "); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCompletionZsh checks the zsh script parses, then loads it through
// compinit as zsh would from its fpath.
func TestCompletionZsh(t *testing.T) {
	zsh := needShell(t, "zsh")
	p := script(t, "zsh")
	if out, err := exec.Command(zsh, "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v: %s", err, out)
	}
	dir := t.TempDir()
	if err := os.Rename(p, filepath.Join(dir, "_longpoll")); err != nil {
		t.Fatal(err)
	}
	prog := `fpath=($1 $fpath); autoload -Uz compinit; compinit -u -d $1/.zcompdump; print -r -- $_comps[longpoll]`
	out, err := exec.Command(zsh, "-f", "-c", prog, "zsh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "_longpoll" {
		t.Errorf("compinit registered %q for longpoll, want _longpoll", got)
	}
}

// TestMan renders the man page with groff and reads it.
func TestMan(t *testing.T) {
	date := time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC)
	var a, b bytes.Buffer
	if err := WriteMan(&a, "v1.2.3", date); err != nil {
		t.Fatal(err)
	}
	if err := WriteMan(&b, "v1.2.3", date); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes differ")
	}
	if !strings.Contains(a.String(), `.TH LONGPOLL 1 "2026\-12\-05" "longpoll v1.2.3"`) {
		t.Errorf("no .TH line with the date and version:\n%.300s", a.String())
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff is not installed: the man page is not rendered")
	}
	cmd := exec.Command(groff, "-man", "-Tascii", "-ww", "-rLL=200n")
	cmd.Stdin = bytes.NewReader(a.Bytes())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("groff: %v: %s", err, stderr.String())
	}
	// Overstrikes (bold, underline) out, as col -b does.
	text := stripOverstrike(string(out))
	for _, want := range []string{
		"--max-hold duration", "longest hold of a poll", "(default: 55s)",
		"longpoll serve [flags]", "longpoll publish [flags] TOPIC [DATA]", "longpoll admin topic rm [flags] TOPIC",
		"--jwt-secret-file string", "LONGPOLL_FOO_BAR", "/etc/longpoll/longpoll.toml", "EXIT STATUS",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if strings.Contains(text, "--demo (default: false)") {
		t.Error("a boolean's default false is printed")
	}
}

func stripOverstrike(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i := 0; i < len(r); i++ {
		if i+1 < len(r) && r[i+1] == '\b' {
			i++ // the next rune replaces this one
			continue
		}
		b.WriteRune(r[i])
	}
	return b.String()
}

// TestCompletionCommand runs the commands as the binary does.
func TestCompletionCommand(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		prefix string
	}{
		{[]string{"completion", "bash"}, ExitOK, "# bash completion for longpoll"},
		{[]string{"completion", "zsh"}, ExitOK, "#compdef longpoll"},
		{[]string{"completion", "fish"}, ExitOK, "# fish completion for longpoll"},
		{[]string{"man"}, ExitOK, `.\" Generated by "longpoll man"`},
		{[]string{"completion"}, ExitUsage, ""},
		{[]string{"completion", "tcsh"}, ExitUsage, ""},
		{[]string{"man", "extra"}, ExitUsage, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tc.args, IO{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr})
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tc.prefix) {
				t.Errorf("output starts %.60q", stdout.String())
			}
		})
	}
}
