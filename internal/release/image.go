package release

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The container image is assembled from scratch: one layer holding the
// static binary, a CA bundle, the passwd and group entries of the user it
// runs as, and its data directory. No base image is pulled, so the build
// needs no registry and the image holds nothing the binary does not use.

// ImageRepository names the image in the tarball for docker load.
const ImageRepository = "ghcr.io/longpoll/longpoll"

// imagePlatforms are the platforms of the image index, in its order.
var imagePlatforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
}

// Where things are in the image, and who owns them.
const (
	imageBinary  = "/usr/local/bin/longpoll"
	imageCAFile  = "/etc/ssl/certs/ca-certificates.crt"
	imageDataDir = "/data"
	imageUID     = 65532 // "nonroot", as in distroless images
	imagePort    = "8080/tcp"
)

// caBundle is the build machine's CA bundle (Debian's ca-certificates)
// copied into the image: the standard path that Go's crypto/x509 reads,
// which an operator can replace by mounting a file over it.
var caBundle = "/etc/ssl/certs/ca-certificates.crt"

// Image builds the OCI image of the Linux binaries of b: an image index of
// linux/amd64 and linux/arm64 written as an OCI layout directory, and the
// amd64 image as a tarball that docker load takes, tagged
// ghcr.io/longpoll/longpoll:<version>. It returns the paths it wrote.
func Image(b *Build) ([]string, error) {
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, fmt.Errorf("release: image: the CA bundle (Debian's ca-certificates package): %w", err)
	}
	tag, err := name.NewTag(ImageRepository+":"+imageTag(b.Version), name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("release: image: %w", err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var amd64 v1.Image
	for _, p := range imagePlatforms {
		bin, ok := b.Binaries[p.OS+"/"+p.Architecture]
		if !ok {
			return nil, fmt.Errorf("release: image: no %s/%s binary", p.OS, p.Architecture)
		}
		if err := checkStatic(bin, p.Architecture); err != nil {
			return nil, fmt.Errorf("release: image: %w", err)
		}
		img, err := imageFor(b, p, bin, ca)
		if err != nil {
			return nil, fmt.Errorf("release: image %s/%s: %w", p.OS, p.Architecture, err)
		}
		if p.Architecture == "amd64" {
			amd64 = img
		}
		platform := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
	}
	idx = mutate.Annotations(idx, imageAnnotations(b)).(v1.ImageIndex)

	dir := filepath.Join(b.Out, "longpoll_"+b.Version+"_oci")
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("release: image: %w", err)
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("release: image: %w", err)
	}
	// index.json names the image index by its tag, as skopeo's and
	// containerd's "oci:DIR:TAG" look it up.
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.TagStr(),
		"io.containerd.image.name":          tag.Name(),
	})); err != nil {
		return nil, fmt.Errorf("release: image: %w", err)
	}
	tarPath := filepath.Join(b.Out, "longpoll_"+b.Version+"_linux_amd64.image.tar")
	if err := tarball.WriteToFile(tarPath, tag, amd64); err != nil {
		return nil, fmt.Errorf("release: image: %w", err)
	}
	return []string{dir, tarPath}, nil
}

// imageFor builds the image of one platform around the binary at bin.
func imageFor(b *Build, p v1.Platform, bin string, ca []byte) (v1.Image, error) {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	rootfs, err := imageLayer(b.Time, exe, ca)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(rootfs)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: b.Time.UTC().Truncate(time.Second)}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "longpoll release: " + imageBinary + ", CA bundle, passwd, group, " + imageDataDir,
			Comment:   "built from scratch, no base image",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = created
	cf.Author = "longpoll release"
	cf.Config = imageConfig(b)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, imageAnnotations(b)).(v1.Image), nil
}

// imageConfig is how the image runs: the server, as the nonroot user, on
// 0.0.0.0:8080 and /data, both given as environment variables so that
// docker run -e changes them. Under the default --auth none the server
// refuses a non-loopback address: give it LONGPOLL_AUTH=jwt and a secret,
// or LONGPOLL_ALLOW_UNAUTHENTICATED=true. There is no HEALTHCHECK: the
// orchestrator probes /readyz (docs/deployment.md).
func imageConfig(b *Build) v1.Config {
	return v1.Config{
		Entrypoint: []string{imageBinary},
		Cmd:        []string{"serve"},
		User:       fmt.Sprintf("%d:%d", imageUID, imageUID),
		Env: []string{
			"PATH=/usr/local/bin:/usr/bin:/bin",
			"LONGPOLL_ADDR=0.0.0.0:8080",
			"LONGPOLL_DATA_DIR=" + imageDataDir,
			"SSL_CERT_FILE=" + imageCAFile,
		},
		ExposedPorts: map[string]struct{}{imagePort: {}},
		Volumes:      map[string]struct{}{imageDataDir: {}},
		WorkingDir:   imageDataDir,
		Labels:       imageAnnotations(b),
		StopSignal:   "SIGTERM",
	}
}

// imageAnnotations are the OCI annotations of the image, its labels too.
func imageAnnotations(b *Build) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "longpoll",
		"org.opencontainers.image.description": "HTTP long-polling messaging server",
		"org.opencontainers.image.source":      "https://github.com/longpoll/longpoll",
		"org.opencontainers.image.version":     b.Version,
		"org.opencontainers.image.revision":    b.Commit,
		"org.opencontainers.image.licenses":    "MIT",
		"org.opencontainers.image.created":     b.Time.UTC().Format(time.RFC3339),
	}
}

// imageLayer returns the layer's tar: every entry dated mtime, owned by
// root but for the data directory.
func imageLayer(mtime time.Time, exe, ca []byte) ([]byte, error) {
	mtime = mtime.UTC().Truncate(time.Second)
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		fmt.Sprintf("nonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", imageUID, imageUID, imageDataDir)
	group := "root:x:0:\nnobody:x:65534:\n" + fmt.Sprintf("nonroot:x:%d:\n", imageUID)
	type entry struct {
		name     string
		mode     int64
		uid      int
		data     []byte
		dir      bool
		username string
	}
	entries := []entry{
		{name: "data/", mode: 0o755, uid: imageUID, dir: true, username: "nonroot"},
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(imageCAFile, "/"), mode: 0o644, data: ca},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(imageBinary, "/"), mode: 0o755, data: exe},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: mtime, Format: tar.FormatPAX,
			Uname: "root", Gname: "root", Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if e.username != "" {
			h.Uname, h.Gname = e.username, e.username
		}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// imageTag makes version a valid tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127},
// other characters (a "+" of build metadata) as "-".
func imageTag(version string) string {
	t := regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(version, "-")
	if t == "" || t[0] == '.' || t[0] == '-' {
		t = "v" + t
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// elfMachines are the ELF machines of the GOARCHes packaged.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// checkStatic checks that the file at bin is a Linux executable for arch
// that needs no dynamic loader: the image has no libc, and a binary
// swapped between architectures would only fail when run.
func checkStatic(bin, arch string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	defer f.Close()
	if want, ok := elfMachines[arch]; !ok || f.Machine != want {
		return fmt.Errorf("%s: an executable for %v, not linux/%s", bin, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamically linked (build it with CGO_ENABLED=0)", bin)
		}
	}
	return nil
}
