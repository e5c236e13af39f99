package fileutil

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteAtomicSetsModeAndContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := WriteAtomic(path, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	if b, _ := os.ReadFile(path); string(b) != "secret" {
		t.Fatalf("content %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("%d files left in the dir, want the one written", len(entries))
	}
}

func TestWriteIfChangedLeavesEqualFilesAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conf")
	if changed, err := WriteIfChanged(path, []byte("a"), 0o644); err != nil || !changed {
		t.Fatalf("first write: changed %v, %v", changed, err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if changed, err := WriteIfChanged(path, []byte("a"), 0o644); err != nil || changed {
		t.Fatalf("same content: changed %v, %v", changed, err)
	}
	st, _ := os.Stat(path)
	if !st.ModTime().Equal(old) || st.Mode().Perm() != 0o644 {
		t.Fatalf("same content: mtime %v (want untouched), mode %v (want 0644 again)", st.ModTime(), st.Mode())
	}
	if changed, err := WriteIfChanged(path, []byte("b"), 0o644); err != nil || !changed {
		t.Fatalf("new content: changed %v, %v", changed, err)
	}
}

func TestReadOptional(t *testing.T) {
	b, err := ReadOptional(filepath.Join(t.TempDir(), "none"))
	if b != nil || err != nil {
		t.Fatalf("missing file: %q, %v", b, err)
	}
}
