package release

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/longpoll/longpoll/internal/cli"
)

// The Debian package: the binary, its man page and shell completions
// (written from the flags, by the same code as longpoll man and longpoll
// completion), a configuration file that starts a working server, and a
// hardened systemd unit. The unit and the maintainer scripts are files
// under packaging/deb; the configuration is deploy/longpoll.toml with the
// package's settings uncommented.

// debArches are the architectures packaged, by GOARCH, which Debian
// names the same.
var debArches = []string{"amd64", "arm64"}

// debSettings are the keys the package's configuration file sets, in
// deploy/longpoll.toml's order: on loopback, under JWT with the secret
// postinst makes, the data in /var/lib/longpoll (the unit's
// StateDirectory).
var debSettings = [][2]string{
	{"addr", `"localhost:8080"`},
	{"data-dir", `"/var/lib/longpoll"`},
	{"auth", `"jwt"`},
	{"jwt-secret-file", `"/etc/longpoll/jwt-secret"`},
}

// Deb builds the Debian packages of the Linux binaries of b, for amd64 and
// arm64, into b.Out, and returns their paths.
func Deb(b *Build) ([]string, error) {
	stage, err := os.MkdirTemp("", "longpoll-deb-")
	if err != nil {
		return nil, fmt.Errorf("release: deb: %w", err)
	}
	defer os.RemoveAll(stage)
	gen, err := debGenerated(b, stage)
	if err != nil {
		return nil, fmt.Errorf("release: deb: %w", err)
	}
	var out []string
	for _, arch := range debArches {
		bin, ok := b.Binaries["linux/"+arch]
		if !ok {
			return nil, fmt.Errorf("release: deb: no linux/%s binary", arch)
		}
		if err := checkStatic(bin, arch); err != nil {
			return nil, fmt.Errorf("release: deb: %w", err)
		}
		p, err := debPackage(b, arch, bin, gen)
		if err != nil {
			return nil, fmt.Errorf("release: deb %s: %w", arch, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// debGenerated writes the files the packages share into stage, and
// returns their contents entries, by destination.
func debGenerated(b *Build, stage string) (files.Contents, error) {
	var man bytes.Buffer
	zw, err := gzip.NewWriterLevel(&man, gzip.BestCompression) // no name, no time: reproducible
	if err != nil {
		return nil, err
	}
	if err := cli.WriteMan(zw, b.Version, b.Time); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	comp := map[string]*bytes.Buffer{}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		comp[sh] = new(bytes.Buffer)
		if err := cli.WriteCompletion(comp[sh], sh); err != nil {
			return nil, err
		}
	}
	conf, err := debConfig(filepath.Join(b.Root, "deploy", "longpoll.toml"))
	if err != nil {
		return nil, err
	}
	unit, err := os.ReadFile(filepath.Join(b.Root, "packaging", "deb", "longpoll.service"))
	if err != nil {
		return nil, err
	}
	copyright := "longpoll: an HTTP long-polling messaging server\n" +
		"Source: https://github.com/longpoll/longpoll\nLicense: MIT\n"
	var contents files.Contents
	for _, f := range []struct {
		dst  string
		data []byte
		typ  string
	}{
		{"/usr/share/man/man1/longpoll.1.gz", man.Bytes(), ""},
		{"/usr/share/bash-completion/completions/longpoll", comp["bash"].Bytes(), ""},
		{"/usr/share/zsh/vendor-completions/_longpoll", comp["zsh"].Bytes(), ""},
		{"/usr/share/fish/vendor_completions.d/longpoll.fish", comp["fish"].Bytes(), ""},
		{"/etc/longpoll/longpoll.toml", conf, files.TypeConfig},
		{"/lib/systemd/system/longpoll.service", unit, ""},
		{"/usr/share/doc/longpoll/copyright", []byte(copyright), ""},
	} {
		src := filepath.Join(stage, strings.ReplaceAll(strings.TrimPrefix(f.dst, "/"), "/", "_"))
		if err := os.WriteFile(src, f.data, 0o644); err != nil {
			return nil, err
		}
		contents = append(contents, &files.Content{Source: src, Destination: f.dst, Type: f.typ,
			FileInfo: &files.ContentFileInfo{Mode: 0o644, MTime: b.Time}})
	}
	return contents, nil
}

// debPackage writes the package of one architecture and returns its path.
func debPackage(b *Build, arch, bin string, shared files.Contents) (string, error) {
	contents := append(files.Contents{{
		Source: bin, Destination: "/usr/bin/longpoll",
		FileInfo: &files.ContentFileInfo{Mode: 0o755, MTime: b.Time},
	}}, shared...)
	scripts := filepath.Join(b.Root, "packaging", "deb")
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:        "longpoll",
		Arch:        arch,
		Platform:    "linux",
		Version:     debVersion(b.Version),
		Section:     "net",
		Priority:    "optional",
		Maintainer:  "longpoll maintainers <longpoll@users.noreply.github.com>",
		Description: "HTTP long-polling messaging server\n" + debDescription,
		Vendor:      "longpoll",
		Homepage:    "https://github.com/longpoll/longpoll",
		License:     "MIT",
		MTime:       b.Time.UTC().Truncate(time.Second),
		Overridables: nfpm.Overridables{
			Depends:  []string{"adduser"},
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(scripts, "postinst"),
				PreRemove:   filepath.Join(scripts, "prerm"),
				PostRemove:  filepath.Join(scripts, "postrm"),
			},
		},
	})
	path := filepath.Join(b.Out, deb.Default.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

const debDescription = `Backends publish; browsers, apps and services receive near-real-time
updates over plain HTTP. Every topic is an ordered log with gapless
sequence numbers: a client resumes from an opaque cursor, and anything it
can no longer get is reported to it as a gap. This package runs the server
as the systemd service longpoll, on localhost:8080 under JWT
authentication, with its data in /var/lib/longpoll.`

// debVersion is version as Debian orders it: "v1.2.3" as 1.2.3 (nfpm
// drops the v and turns a pre-release into 1.2.3~rc1); a version without
// a leading digit, such as "dev", as 0.0.0~dev.
func debVersion(version string) string {
	v := strings.TrimPrefix(version, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		return "0.0.0~" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '+' || r == '~' {
				return r
			}
			return '.'
		}, version)
	}
	return version
}

// debConfig returns the configuration file of the package: the template at
// path (deploy/longpoll.toml) with each of debSettings uncommented and
// set, under a header that says so. A key the template no longer shows
// commented out is an error, so the two cannot drift apart unseen.
func debConfig(path string) ([]byte, error) {
	tmpl, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(tmpl), "\n")
	for _, kv := range debSettings {
		found := false
		for i, l := range lines {
			if strings.HasPrefix(l, "# "+kv[0]+" = ") {
				lines[i] = kv[0] + " = " + kv[1] + " # set by the Debian package"
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: no line %q to set", path, "# "+kv[0]+" = ...")
		}
	}
	header := `# The Debian package's configuration of the longpoll service (a conffile:
# your changes are kept across upgrades). The package sets addr, data-dir,
# auth and jwt-secret-file below; everything else is the default.
# Apply a change with: sudo systemctl reload longpoll (the settings marked
# "live"), or sudo systemctl restart longpoll (the others).
# Sign a token: sudo longpoll token --secret-file /etc/longpoll/jwt-secret --subscribe '>' --publish '>'
#
`
	return []byte(header + strings.Join(lines, "\n")), nil
}
