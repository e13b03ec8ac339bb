package client_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/longpoll/longpoll/client"
)

func TestCursorFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub.cursor")
	if c, err := client.ReadCursorFile(path); c != "" || err != nil {
		t.Fatalf("missing file: %q, %v", c, err)
	}
	for _, want := range []string{"AQEBYe6LPQ3AaI6wAZ6hJPQ", "AQEC-_", ""} {
		if err := client.WriteCursorFile(path, want); err != nil {
			t.Fatal(err)
		}
		if got, err := client.ReadCursorFile(path); got != want || err != nil {
			t.Fatalf("read back %q, %v; want %q", got, err, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files, want only the cursor file (no temp files left)", len(entries))
	}
	if err := client.WriteCursorFile(path, "not a cursor!"); err == nil {
		t.Fatal("wrote a non-cursor")
	}
	other := filepath.Join(dir, "notes.txt")
	os.WriteFile(other, []byte("my precious notes\n"), 0o644)
	if _, err := client.ReadCursorFile(other); err == nil {
		t.Fatal("read a text file as a cursor")
	}
	if err := client.WriteCursorFile(filepath.Join(dir, "no", "such", "dir"), "AQ"); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}
