package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Docs are the files of the repository's root that every archive holds
// beside the binary.
var Docs = []string{"LICENSE", "README.md", "CHANGELOG.md"}

// ArchiveName is the file name of platform's archive: a tar.gz, or a zip
// for Windows. Its files are under ArchiveDir.
func ArchiveName(version, platform string) string {
	ext := ".tar.gz"
	if strings.HasPrefix(platform, "windows/") {
		ext = ".zip"
	}
	return ArchiveDir(version, platform) + ext
}

// ArchiveDir is the top directory in platform's archive:
// longpoll_<version>_<os>_<arch>.
func ArchiveDir(version, platform string) string {
	return "longpoll_" + version + "_" + strings.ReplaceAll(platform, "/", "_")
}

// entry is one file of an archive.
type entry struct {
	name string // under the top directory
	mode int64
	data []byte
}

// Archives writes the archive of every binary in Binaries into Out and
// returns their paths, in the order of Platforms.
func (b *Build) Archives() ([]string, error) {
	docs := make([]entry, 0, len(Docs))
	for _, name := range Docs {
		data, err := os.ReadFile(filepath.Join(b.Root, name))
		if err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		docs = append(docs, entry{name: name, mode: 0o644, data: data})
	}
	var paths []string
	for _, p := range Platforms {
		bin, ok := b.Binaries[p]
		if !ok {
			return nil, fmt.Errorf("release: no %s binary to archive", p)
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		goos, _, _ := strings.Cut(p, "/")
		files := append([]entry{{name: binaryName(goos), mode: 0o755, data: data}}, docs...)
		path := filepath.Join(b.Out, ArchiveName(b.Version, p))
		if err := writeArchive(path, ArchiveDir(b.Version, p), b.Time, files); err != nil {
			return nil, fmt.Errorf("release: %s: %w", filepath.Base(path), err)
		}
		b.logf("wrote %s", filepath.Base(path))
		paths = append(paths, path)
	}
	return paths, nil
}

// writeArchive writes files under dir into a tar.gz or a zip at path, by
// its name, with nothing from the machine that wrote it: every time is
// mtime, the owner is 0, the files are in the order of their names.
func writeArchive(path, dir string, mtime time.Time, files []entry) error {
	files = append([]entry(nil), files...)
	slices.SortFunc(files, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	var err error
	if strings.HasSuffix(path, ".zip") {
		err = writeZip(&buf, dir, mtime, files)
	} else {
		err = writeTarGz(&buf, dir, mtime, files)
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func writeTarGz(w io.Writer, dir string, mtime time.Time, files []entry) error {
	// A zero gzip header: no name, no time, the same OS byte everywhere.
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	hdr := func(name string, typ byte, mode, size int64) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: mtime}
	}
	if err := tw.WriteHeader(hdr(dir+"/", tar.TypeDir, 0o755, 0)); err != nil {
		return err
	}
	for _, f := range files {
		if err := tw.WriteHeader(hdr(dir+"/"+f.name, tar.TypeReg, f.mode, int64(len(f.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func writeZip(w io.Writer, dir string, mtime time.Time, files []entry) error {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestCompression)
	})
	d := &zip.FileHeader{Name: dir + "/", Method: zip.Store, Modified: mtime}
	d.SetMode(os.ModeDir | 0o755)
	if _, err := zw.CreateHeader(d); err != nil {
		return err
	}
	for _, f := range files {
		h := &zip.FileHeader{Name: dir + "/" + f.name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(os.FileMode(f.mode))
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := fw.Write(f.data); err != nil {
			return err
		}
	}
	return zw.Close()
}
