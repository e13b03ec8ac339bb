package deploy

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// needTools skips the test when node or npm is missing, outside CI.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed, and CI=true", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

// copyJS copies ../js into dir, less what npm ci and the builds make.
func copyJS(t *testing.T, dir string) {
	t.Helper()
	src := "../js"
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		switch {
		case rel == "node_modules" || rel == "dist" || rel == "test-artifacts":
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // a link to them, say
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// npm runs npm in dir and returns what it printed and its error.
func npm(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", args...)
	cmd.Dir = dir
	cmd.Env = childEnv("npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// untar extracts the npm tarball into dir (its package/ folder as dir)
// and returns the paths it holds, relative to package/.
func untar(t *testing.T, tgz, dir string) []string {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rel, ok := strings.CutPrefix(path.Clean(h.Name), "package/")
		if !ok || strings.HasPrefix(rel, "../") || h.Typeflag != tar.TypeReg {
			t.Fatalf("the tarball holds %q (type %c): want regular files under package/", h.Name, h.Typeflag)
		}
		names = append(names, rel)
		out := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(names)
	return names
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)[^)]*\)`)

// The program that uses the packed module as an application would, by its
// name: it subscribes, publishes, and prints what it got.
const packedApp = `import { subscribe, publish } from "@longpoll/client";
const baseUrl = process.argv[2];
const got = new Promise((resolve, reject) => {
  const sub = subscribe("npm.pack", (m) => { sub.close(); resolve(m); }, { baseUrl, since: "earliest", onError: reject });
});
const receipt = await publish("npm.pack", { from: "the packed module" }, { baseUrl });
const message = await got;
console.log(JSON.stringify({ receipt, message }));
`

// And a TypeScript program that type-checks against its declarations,
// found through package.json's exports.
const packedTypes = `import { subscribe, publish, type Message, type Receipt } from "@longpoll/client";
const sub = subscribe<{ from: string }>("npm.pack", (m: Message<{ from: string }>) => { const from: string = m.data.from; void from; });
sub.close();
const r: Promise<Receipt> = publish("npm.pack", 1, { baseUrl: "http://localhost:8080" });
void r;
`

// TestNPMPack packs js/ as npm publish would, in a copy of it: first
// without its build tools (npm ci not run), which fails and says what to
// do; then with them. It checks the tarball's files, its package.json and
// README, then installs it into an application that loads it in Node,
// subscribes and publishes against a running server, and type-checks
// against its declarations.
func TestNPMPack(t *testing.T) {
	if testing.Short() {
		t.Skip("a build and a pack, half a minute: not under -short")
	}
	needTools(t, "node", "npm")
	modules, err := filepath.Abs("../js/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "esbuild")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("js/node_modules lacks esbuild, and CI=true (js/check-build.sh runs npm ci first): %v", err)
		}
		t.Skip("js/node_modules is not installed: run npm ci in js/")
	}
	tmp := t.TempDir()
	js := filepath.Join(tmp, "js")
	copyJS(t, js)

	out, err := npm(t, js, "pack", "--pack-destination", tmp)
	if err == nil || !strings.Contains(out, "run npm ci in js/") {
		t.Fatalf("npm pack without the build tools: want a failure that says to run npm ci; err %v\n%s", err, out)
	}

	if err := os.Symlink(modules, filepath.Join(js, "node_modules")); err != nil {
		t.Fatal(err)
	}
	out, err = npm(t, js, "pack", "--json", "--pack-destination", tmp)
	if err != nil {
		t.Fatalf("npm pack: %v\n%s", err, out)
	}
	var packed []struct {
		Filename string `json:"filename"`
	}
	if i := strings.Index(out, "["); i < 0 || json.Unmarshal([]byte(out[i:]), &packed) != nil || len(packed) != 1 {
		t.Fatalf("npm pack --json printed:\n%s", out)
	}

	app := filepath.Join(tmp, "app")
	pkgDir := filepath.Join(app, "node_modules", "@longpoll", "client")
	files := untar(t, filepath.Join(tmp, packed[0].Filename), pkgDir)
	if want := []string{"LICENSE", "README.md", "dist/longpoll.d.ts", "dist/longpoll.js", "package.json"}; !slices.Equal(files, want) {
		t.Errorf("the tarball holds %q, want %q", files, want)
	}

	var pkg struct {
		Name, Version, License, Homepage, Types string
		Repository                              struct{ URL string }
		Keywords                                []string
		Exports                                 map[string]json.RawMessage
	}
	data, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	if pkg.Name != "@longpoll/client" || "v"+pkg.Version != releaseVersion || pkg.License == "" || len(pkg.Keywords) == 0 ||
		!strings.HasPrefix(pkg.Homepage, "https://") || !strings.Contains(pkg.Repository.URL, "github.com/longpoll/longpoll") {
		t.Errorf("package.json: name, version %s, license, keywords, homepage or repository missing or wrong: %s", releaseVersion, data)
	}
	var dot struct{ Types, Default string }
	if err := json.Unmarshal(pkg.Exports["."], &dot); err != nil || !slices.Contains(files, strings.TrimPrefix(dot.Types, "./")) ||
		!slices.Contains(files, strings.TrimPrefix(dot.Default, "./")) || !slices.Contains(files, pkg.Types) {
		t.Errorf("package.json: types %q and exports[\".\"] %s must name files of the tarball", pkg.Types, pkg.Exports["."])
	}
	if license, err := os.ReadFile(filepath.Join(pkgDir, "LICENSE")); err == nil {
		texts := map[string]string{"MIT": "Permission is hereby granted, free of charge", "Apache-2.0": "Apache License"}
		if want, ok := texts[pkg.License]; ok && !strings.Contains(string(license), want) {
			t.Errorf("LICENSE is not the %s licence that package.json names", pkg.License)
		}
	}
	// npm shows the README away from the repository: its links must be
	// absolute.
	readme, err := os.ReadFile(filepath.Join(pkgDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mdLink.FindAllStringSubmatch(string(readme), -1) {
		if !strings.HasPrefix(m[1], "https://") && !strings.HasPrefix(m[1], "#") {
			t.Errorf("README.md links to %q, which does not work from npm: use https://github.com/longpoll/longpoll/blob/main/...", m[1])
		}
	}

	// Loaded by its name, it talks to a server.
	if err := os.WriteFile(filepath.Join(app, "package.json"), []byte(`{"name":"app","private":true,"type":"module"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "main.mjs"), []byte(packedApp), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, nil, false, "serve", "--store", "memory", "--addr", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "main.mjs", srv.url)
	cmd.Dir = app
	cmd.Env = childEnv()
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node main.mjs: %v\n%s\nserver:\n%s", err, got, srv.logText())
	}
	var res struct {
		Receipt struct {
			Topic string
			Seq   int
		}
		Message struct {
			Topic string
			Seq   int
			Data  struct{ From string }
		}
	}
	if err := json.Unmarshal(got, &res); err != nil {
		t.Fatalf("node main.mjs printed %q: %v", got, err)
	}
	if res.Message.Topic != "npm.pack" || res.Message.Data.From != "the packed module" || res.Receipt.Seq != 1 || res.Message.Seq != res.Receipt.Seq {
		t.Errorf("the packed module published %+v and received %+v", res.Receipt, res.Message)
	}

	// Its declarations, through exports, with the locked TypeScript.
	if err := os.WriteFile(filepath.Join(app, "check.ts"), []byte(packedTypes), 0o644); err != nil {
		t.Fatal(err)
	}
	tsc := exec.CommandContext(ctx, "node", filepath.Join(modules, "typescript", "bin", "tsc"), "--noEmit", "--strict",
		"--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--lib", "es2022,dom", "check.ts")
	tsc.Dir = app
	if out, err := tsc.CombinedOutput(); err != nil {
		t.Errorf("tsc against the packed declarations: %v\n%s", err, out)
	}
}
