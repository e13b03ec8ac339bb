package release

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ChecksumsFile is the name of the checksums' file in Out.
const ChecksumsFile = "SHA256SUMS"

// WriteChecksums writes dir/SHA256SUMS, in sha256sum's format, over the
// files at paths, which must be in dir; a directory (the image's OCI
// layout) counts as every file in it. "sha256sum -c SHA256SUMS" in dir
// checks them. It returns the file's path.
func WriteChecksums(dir string, paths []string) (string, error) {
	var lines []string
	add := func(path string) error {
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return fmt.Errorf("release: checksums: %s is not in %s", path, dir)
		}
		sum, err := fileSHA256(path)
		if err != nil {
			return fmt.Errorf("release: checksums: %w", err)
		}
		lines = append(lines, sum+"  "+filepath.ToSlash(rel)+"\n")
		return nil
	}
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			return add(path)
		})
		if err != nil {
			return "", err
		}
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[66:], b[66:]) })
	out := filepath.Join(dir, ChecksumsFile)
	if err := os.WriteFile(out, []byte(strings.Join(lines, "")), 0o644); err != nil {
		return "", fmt.Errorf("release: checksums: %w", err)
	}
	return out, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
