package longpoll_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLayers holds the module's import rules (docs/architecture.md,
// "Layers"): for each package, the packages of the module it may import
// (its non-test files), so that the client never links the server, the
// transport never reaches the server but through internal/transport, and
// backends stay independent.
func TestLayers(t *testing.T) {
	const mod = "github.com/longpoll/longpoll"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, mod+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		var own []string
		for _, imp := range f[1:] {
			if imp == mod || strings.HasPrefix(imp, mod+"/") {
				own = append(own, strings.TrimPrefix(strings.TrimPrefix(imp, mod), "/"))
			}
		}
		imports[strings.TrimPrefix(strings.TrimPrefix(f[0], mod), "/")] = own
	}
	// allowed lists, for each package ("" is the root), the module's
	// packages it may import.
	allowed := map[string][]string{
		"protocol":           {},
		"client":             {"protocol"},
		"":                   {"protocol", "internal/hub", "internal/wheel", "internal/limit", "internal/cursor", "internal/transport", "internal/sysx"},
		"broker/memory":      {"", "protocol"},
		"broker/bolt":        {"", "protocol"},
		"broker/redis":       {"", "protocol"},
		"internal/eventloop": {"internal/transport", "internal/headtime"},
		"internal/transport": {"internal/httpdate"},
		"internal/hub":       {},
		"internal/wheel":     {},
		"internal/bench":     {"internal/sysx"},
	}
	for pkg, may := range allowed {
		got, ok := imports[pkg]
		if !ok {
			t.Errorf("package %q not found: update the rules", pkg)
			continue
		}
		for _, imp := range got {
			if !slices.Contains(may, imp) {
				t.Errorf("%s imports %s, which the layering does not allow", rootName(pkg), rootName(imp))
			}
		}
	}
}

// rootName names a package of the module for a message.
func rootName(pkg string) string {
	if pkg == "" {
		return "the root"
	}
	return pkg
}
