package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// The man page and the shell completions are written from the flag sets
// the subcommands build for themselves: each subcommand is run with
// --help and a flagSink for its standard error, which newFlagSet hands
// every flag set it makes. Nothing here lists a flag, so a flag added to
// a command is in both at the next build.

// flagSink is the standard error of a command run for its flags: it keeps
// the flag sets newFlagSet makes and the usage text the command prints.
type flagSink struct {
	sets []*flag.FlagSet
	text bytes.Buffer
}

func (s *flagSink) Write(p []byte) (int, error) { return s.text.Write(p) }

// noteFlagSet gives fs to the flagSink that io's standard error is, if
// it is one.
func noteFlagSet(fs *flag.FlagSet, io IO) {
	if s, ok := io.Stderr.(*flagSink); ok {
		s.sets = append(s.sets, fs)
	}
}

// docCommand is a command as the man page and the completions show it.
type docCommand struct {
	path       []string // "serve"; "admin", "topic", "rm"
	summary    string
	positional string        // as its usage line names them: "TOPIC [DATA]"
	flags      *flag.FlagSet // nil for a command of commands (admin)
	subs       []docCommand
	choices    []string // the words its one argument may be, when fixed
}

func (c docCommand) name() string { return strings.Join(c.path, " ") }

// docCommands returns every command of longpoll, each with its flag set
// as built by the command itself.
func docCommands() ([]docCommand, error) {
	var out []docCommand
	for _, c := range commands() {
		if c.name == "admin" {
			admin := docCommand{path: []string{"admin"}, summary: c.summary}
			topic := docCommand{path: []string{"admin", "topic"}, summary: "topic commands"}
			for _, ac := range adminCommands() {
				path := append([]string{"admin"}, strings.Fields(ac.name)...)
				d, err := commandFlags(path, ac.summary, func(args []string, io IO) int {
					return runAdmin(context.Background(), args, io)
				})
				if err != nil {
					return nil, err
				}
				if len(path) == 3 && path[1] == "topic" {
					topic.subs = append(topic.subs, d)
					continue
				}
				admin.subs = append(admin.subs, d)
			}
			if len(topic.subs) > 0 {
				admin.subs = append(admin.subs, topic)
			}
			out = append(out, admin)
			continue
		}
		d, err := commandFlags([]string{c.name}, c.summary, func(args []string, io IO) int {
			return c.run(context.Background(), args, io)
		})
		if err != nil {
			return nil, err
		}
		if c.name == "completion" {
			d.choices = shells
		}
		out = append(out, d)
	}
	return out, nil
}

// commandFlags runs the command at path with --help, and returns it with
// the first flag set it built and the positional arguments its usage
// line names.
func commandFlags(path []string, summary string, run func(args []string, io IO) int) (docCommand, error) {
	sink := new(flagSink)
	args := append(append([]string{}, path[1:]...), "--help")
	if code := run(args, IO{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: sink}); code != ExitOK {
		return docCommand{}, fmt.Errorf("longpoll %s --help: exit status %d: %s", strings.Join(path, " "), code, sink.text.String())
	}
	if len(sink.sets) == 0 {
		return docCommand{}, fmt.Errorf("longpoll %s --help built no flag set", strings.Join(path, " "))
	}
	d := docCommand{path: path, summary: summary, flags: sink.sets[0]}
	prefix := "Usage: longpoll " + strings.Join(path, " ") + " [flags]"
	for line := range strings.SplitSeq(sink.text.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			d.positional = strings.TrimSpace(rest)
			break
		}
	}
	return d, nil
}

// shells are the shells WriteCompletion writes for.
var shells = []string{"bash", "zsh", "fish"}

// docFlag is one flag as the man page and the completions show it.
type docFlag struct {
	name, value, usage, def string // value: "" for a boolean flag
}

func flagsOf(fs *flag.FlagSet) []docFlag {
	var out []docFlag
	if fs == nil {
		return nil
	}
	fs.VisitAll(func(f *flag.Flag) {
		d := docFlag{name: f.Name, def: f.DefValue}
		value, usage := flag.UnquoteUsage(f)
		d.usage = usage
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			d.value = value
			if d.value == "" {
				d.value = "value"
			}
		}
		out = append(out, d)
	})
	return out
}

// runCompletion prints a shell's completion script.
func runCompletion(_ context.Context, args []string, io IO) int {
	fs := newFlagSet("completion", strings.Join(shells, "|"), io)
	pos, code, ok := parseArgs(fs, args, nil, io)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(io, "completion", "name one shell: %s", strings.Join(shells, ", "))
	}
	if err := WriteCompletion(io.Stdout, pos[0]); err != nil {
		return usageError(io, "completion", "%v", err)
	}
	return ExitOK
}

// runMan prints the man page.
func runMan(_ context.Context, args []string, io IO) int {
	fs := newFlagSet("man", "", io)
	pos, code, ok := parseArgs(fs, args, nil, io)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(io, "man", "unexpected argument %q", pos[0])
	}
	b := buildInfo()
	var date time.Time
	if b.built != "" {
		date, _ = time.Parse(time.RFC3339, b.built)
	}
	if err := WriteMan(io.Stdout, b.version, date); err != nil {
		fmt.Fprintf(io.Stderr, "longpoll man: %v\n", err)
		return ExitError
	}
	return ExitOK
}

// WriteCompletion writes the completion script of shell (bash, zsh or
// fish) for every command and flag of longpoll.
func WriteCompletion(w io.Writer, shell string) error {
	cmds, err := docCommands()
	if err != nil {
		return err
	}
	root := docCommand{subs: cmds}
	var buf bytes.Buffer
	switch shell {
	case "bash":
		writeBash(&buf, root)
	case "zsh":
		writeZsh(&buf, root)
	case "fish":
		writeFish(&buf, root)
	default:
		return fmt.Errorf("no completion for shell %q: choose one of %s", shell, strings.Join(shells, ", "))
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// walk calls fn for c and every command below it, parents first.
func walk(c docCommand, fn func(docCommand)) {
	fn(c)
	for _, s := range c.subs {
		walk(s, fn)
	}
}

func names(cs []docCommand) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.path[len(c.path)-1])
	}
	return out
}

// writeBash writes a bash completion function. It finds the command the
// words name so far (each word a subcommand of the one before), then offers that
// command's flags, its subcommands or fixed words, or files (complete -o
// default) after a flag that takes a value and for other arguments.
func writeBash(w io.Writer, root docCommand) {
	io.WriteString(w, `# bash completion for longpoll. Generated by "longpoll completion bash"; do not edit.

_longpoll_words() {
    case $1 in
`)
	walk(root, func(c docCommand) {
		words := append(names(c.subs), c.choices...)
		if len(words) > 0 {
			fmt.Fprintf(w, "    %q) echo %q ;;\n", c.name(), strings.Join(words, " "))
		}
	})
	io.WriteString(w, `    esac
}

_longpoll_flags() {
    case $1 in
`)
	walk(root, func(c docCommand) {
		var all []string
		for _, f := range flagsOf(c.flags) {
			all = append(all, "--"+f.name)
		}
		if len(all) > 0 {
			fmt.Fprintf(w, "    %q) echo %q ;;\n", c.name(), strings.Join(all, " "))
		}
	})
	io.WriteString(w, `    esac
}

_longpoll_value_flags() {
    case $1 in
`)
	walk(root, func(c docCommand) {
		var vals []string
		for _, f := range flagsOf(c.flags) {
			if f.value != "" {
				vals = append(vals, "--"+f.name)
			}
		}
		if len(vals) > 0 {
			fmt.Fprintf(w, "    %q) echo %q ;;\n", c.name(), strings.Join(vals, " "))
		}
	})
	io.WriteString(w, `    esac
}

_longpoll() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local path="" i w next
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        [[ $w == -* ]] && continue
        next=${path:+$path }$w
        if [[ " $(_longpoll_words "$path") " == *" $w "* ]]; then
            path=$next
        else
            break
        fi
    done
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_longpoll_flags "$path")" -- "$cur"))
        return
    fi
    if [[ $prev == --* && " $(_longpoll_value_flags "$path") " == *" ${prev%%=*} "* ]]; then
        return # a flag's value: files, through complete -o default
    fi
    COMPREPLY=($(compgen -W "$(_longpoll_words "$path")" -- "$cur"))
}

complete -o default -F _longpoll longpoll
`)
}

// zshQuote quotes s for a zsh single-quoted word.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// zshDesc escapes s for the description of an _arguments spec or a
// _describe entry.
func zshDesc(s string) string {
	return strings.NewReplacer(`\`, `\\`, "[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
}

func zshFunc(c docCommand) string {
	if len(c.path) == 0 {
		return "_longpoll"
	}
	return "_longpoll_" + strings.ReplaceAll(strings.Join(c.path, "_"), "-", "_")
}

// writeZsh writes a zsh completion function per command: one that has
// subcommands describes them and hands the rest of the words to the
// chosen one; one that has flags lists them with _arguments.
func writeZsh(w io.Writer, root docCommand) {
	fmt.Fprintf(w, "#compdef longpoll\n# zsh completion for longpoll. Generated by \"longpoll completion zsh\"; do not edit.\n")
	walk(root, func(c docCommand) {
		fmt.Fprintf(w, "\n%s() {\n", zshFunc(c))
		if len(c.subs) > 0 {
			fmt.Fprintf(w, "  local curcontext=$curcontext state line\n  local -a cmds\n")
			fmt.Fprintf(w, "  _arguments -C '1:command:->cmd' '*::arg:->args'\n  case $state in\n  cmd)\n    cmds=(\n")
			for _, s := range c.subs {
				fmt.Fprintf(w, "      %s\n", zshQuote(zshDesc(s.path[len(s.path)-1])+":"+zshDesc(s.summary)))
			}
			fmt.Fprintf(w, "    )\n    _describe -t commands command cmds ;;\n  args)\n    case $words[1] in\n")
			for _, s := range c.subs {
				fmt.Fprintf(w, "    %s) %s ;;\n", s.path[len(s.path)-1], zshFunc(s))
			}
			fmt.Fprintf(w, "    esac ;;\n  esac\n}\n")
			return
		}
		fmt.Fprintf(w, "  _arguments -s -S \\\n")
		for _, f := range flagsOf(c.flags) {
			spec := "--" + f.name
			if f.value != "" {
				spec += "=[" + zshDesc(f.usage) + "]:" + zshDesc(f.value) + ":_files"
			} else {
				spec += "[" + zshDesc(f.usage) + "]"
			}
			fmt.Fprintf(w, "    %s \\\n", zshQuote(spec))
		}
		switch {
		case len(c.choices) > 0:
			fmt.Fprintf(w, "    %s\n}\n", zshQuote("1:argument:("+strings.Join(c.choices, " ")+")"))
		case c.positional != "":
			fmt.Fprintf(w, "    %s\n}\n", zshQuote("*:"+zshDesc(strings.ToLower(c.positional))+":_files"))
		default:
			fmt.Fprintf(w, "    && return 0\n}\n")
		}
	})
	fmt.Fprintf(w, "\n_longpoll \"$@\"\n")
}

// fishQuote quotes s for a fish single-quoted word.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

// writeFish writes fish completions: each command is offered while no
// sibling has been given, and its flags once it has, with files after a
// flag that takes a value.
func writeFish(w io.Writer, root docCommand) {
	fmt.Fprintf(w, "# fish completion for longpoll. Generated by \"longpoll completion fish\"; do not edit.\n\ncomplete -c longpoll -f\n")
	// seen is the condition that the words so far name c.
	seen := func(c docCommand) string {
		var conds []string
		for _, p := range c.path {
			conds = append(conds, "__fish_seen_subcommand_from "+p)
		}
		return strings.Join(conds, "; and ")
	}
	walk(root, func(c docCommand) {
		if len(c.subs) > 0 || len(c.choices) > 0 {
			words := append(names(c.subs), c.choices...)
			cond := "not __fish_seen_subcommand_from " + strings.Join(words, " ")
			if len(c.path) > 0 {
				cond = seen(c) + "; and " + cond
			}
			for _, s := range c.subs {
				fmt.Fprintf(w, "complete -c longpoll -n %s -a %s -d %s\n", fishQuote(cond), s.path[len(s.path)-1], fishQuote(s.summary))
			}
			for _, ch := range c.choices {
				fmt.Fprintf(w, "complete -c longpoll -n %s -a %s\n", fishQuote(cond), ch)
			}
		}
		if c.flags == nil {
			return
		}
		cond := fishQuote(seen(c))
		for _, f := range flagsOf(c.flags) {
			fmt.Fprintf(w, "complete -c longpoll -n %s -l %s", cond, f.name)
			if f.value != "" {
				fmt.Fprintf(w, " -r -F")
			}
			fmt.Fprintf(w, " -d %s\n", fishQuote(f.usage))
		}
		if c.positional != "" && len(c.choices) == 0 {
			fmt.Fprintf(w, "complete -c longpoll -n %s -F\n", cond)
		}
	})
}

// roff escapes s for running text of a man page.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// WriteMan writes the man page longpoll(1) in roff: every command with its
// arguments and flags, for version, dated date (undated when zero).
func WriteMan(w io.Writer, version string, date time.Time) error {
	cmds, err := docCommands()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	day := ""
	if !date.IsZero() {
		day = date.UTC().Format("2006-01-02")
	}
	fmt.Fprintf(&b, `.\" Generated by "longpoll man"; do not edit.
.TH LONGPOLL 1 "%s" "longpoll %s" "User Commands"
.nh
.ad l
.SH NAME
longpoll \- an HTTP long\-polling messaging server, and its client
.SH SYNOPSIS
.B longpoll
.I command
.RI [ flags ]
.RI [ arguments ]
.SH DESCRIPTION
.B longpoll serve
runs a server that clients publish messages to and receive them from over
plain HTTP: a poll is held until a message arrives on one of its topics or
its timeout passes. Every topic is an ordered log; a client resumes from an
opaque cursor, and anything it can no longer get is reported to it as a gap.
The other commands publish, subscribe, measure and administer a server.
.PP
Flags may come before or after the arguments;
.B \-\-
ends the flags. A flag is written
.BI \-\- name " value"
or
.BI \-\- name = value\fR,
a boolean flag
.BI \-\- name
or
.BI \-\- name =false\fR.
.SH COMMANDS
`, roff(day), roff(version))
	root := docCommand{subs: cmds}
	walk(root, func(c docCommand) {
		if len(c.path) == 0 || c.flags == nil {
			return
		}
		fmt.Fprintf(&b, ".SS \"longpoll %s\"\n", roff(c.name()))
		fmt.Fprintf(&b, ".B longpoll %s\n.RI [ flags ]", roff(c.name()))
		if c.positional != "" {
			fmt.Fprintf(&b, "\n.I %s", roff(c.positional))
		}
		fmt.Fprintf(&b, "\n.PP\n%s.\n", roff(upperFirst(c.summary)))
		for _, f := range flagsOf(c.flags) {
			fmt.Fprintf(&b, ".TP\n.B \\-\\-%s", roff(f.name))
			if f.value != "" {
				fmt.Fprintf(&b, " \\fI%s\\fR", roff(f.value))
			}
			fmt.Fprintf(&b, "\n%s", roff(f.usage))
			if f.def != "" && !(f.value == "" && f.def == "false") {
				fmt.Fprintf(&b, " (default: %s)", roff(f.def))
			}
			fmt.Fprintf(&b, ".\n")
		}
	})
	b.WriteString(`.SH ENVIRONMENT
Every flag
.BI \-\- foo\-bar
of
.B serve
can also be set with the variable
.BR LONGPOLL_FOO_BAR ,
and from the configuration file named by
.B \-\-config
(or
.BR LONGPOLL_CONFIG ),
keyed by the flag's name: a flag on the command line wins over its variable,
the variable over the file, the file over the default.
The other commands read the variables of their flags too, but for the flags
that their
.B \-\-help
leaves unmarked.
.TP
.B LONGPOLL_SERVER
the server the client commands talk to (\fB\-\-server\fR).
.TP
.B LONGPOLL_TOKEN\fR, \fBLONGPOLL_TOKEN_FILE
a bearer token, or a file holding one, for a server under
.BR "\-\-auth jwt" .
.SH FILES
.TP
.I /etc/longpoll/longpoll.toml
the configuration file of the Debian package's service
.RB ( "longpoll config \-\-check" " checks one)."
.TP
.I /etc/longpoll/jwt\-secret
the HS256 secret the package's service verifies tokens with; sign tokens with
.BR "longpoll token \-\-secret\-file /etc/longpoll/jwt\-secret" .
.SH SIGNALS
.B serve
stops gracefully at SIGINT or SIGTERM (after
.B \-\-drain\-delay
when set, within
.BR \-\-shutdown\-grace ),
and at SIGHUP reads its configuration file again, applies what can change
live, and reloads its JWT keys and TLS certificate without dropping a
connection.
.SH "EXIT STATUS"
0 on success or a clean stop, 1 on an error, 2 on a usage error.
.SH EXAMPLES
.nf
longpoll serve \-\-config /etc/longpoll/longpoll.toml
longpoll subscribe news \-\-since earliest \-\-cursor\-file news.cursor
longpoll publish news '{"text":"hello"}'
longpoll completion bash > /etc/bash_completion.d/longpoll
.fi
.SH "SEE ALSO"
The documentation in the source tree: docs/protocol.md, docs/operations.md,
docs/deployment.md.
`)
	_, err = w.Write(b.Bytes())
	return err
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
