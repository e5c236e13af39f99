package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCreateAndDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pvc-1_default_data")
	if err := run([]string{"-p", dir, "-s", "1024", "-m", "Filesystem", "-a", "create"}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !info.IsDir() || info.Mode().Perm() != 0o777 {
		t.Fatalf("created %v, want a 0777 directory", info.Mode())
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-p", dir, "-a", "delete"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory still there after delete: %v", err)
	}
}

func TestRefusesUnsafePaths(t *testing.T) {
	for _, path := range []string{"", "relative/dir", "/", "/var", "/var/lib/../..", "/var/lib/./x"} {
		if err := run([]string{"-p", path, "-a", "delete"}); err == nil {
			t.Errorf("path %q accepted", path)
		}
	}
}

func TestRefusesBlockMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	if err := run([]string{"-p", dir, "-m", "Block", "-a", "create"}); err == nil {
		t.Fatal("block mode accepted")
	}
}
