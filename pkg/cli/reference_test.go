package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateReference = flag.Bool("update", false, "rewrite docs/configuration.md from the flag definitions")

// TestReferenceUpToDate fails when docs/configuration.md no longer matches
// the flags; `make docs` regenerates it.
func TestReferenceUpToDate(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteReference(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"`--data-dir`, `-d`", "`SKIFF_DATA_DIR`", "`/var/lib/skiff`", "`--kube-apiserver-arg`", "## skiff token"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("reference lacks %s", want)
		}
	}
	path := filepath.Join("..", "..", "docs", "configuration.md")
	if *updateReference {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run `make docs`", err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		t.Fatalf("%s is stale: run `make docs` and commit the result", path)
	}
}
