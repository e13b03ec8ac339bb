// Package testrun helps a TestMain run its package's tests once more in
// a child process under other settings (another transport, one
// processor), so that every test holds under each.
package testrun

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
)

// Special reports a run that fuzzes, benchmarks or lists rather than
// tests: one not to repeat.
func Special() bool {
	for _, name := range []string{"test.fuzz", "test.bench", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return true
		}
	}
	return false
}

// Again runs this test binary again, with its arguments and with env
// added to its environment, its output going to this process's, after a
// line that says what the run is.
func Again(what string, env ...string) error {
	fmt.Println("--- the same tests " + what)
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
