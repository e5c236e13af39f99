package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lowers the key derivation cost: every Seal and Open would
// otherwise take a tenth of a second. TestSealUsesTheFullCost checks the
// real one.
func TestMain(m *testing.M) {
	kdfIterations = 1000
	os.Exit(m.Run())
}

const identity = "tls/server-ca.crt"

var shared = []string{identity, "tls/server-ca.key", "tls/service.key", "cred/encryption-config.json", "token"}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func testMaterial() Material {
	return Material{
		identity:            []byte("CA CERT"),
		"tls/server-ca.key": []byte("CA KEY"),
		"tls/service.key":   []byte("SA KEY"),
		"token":             []byte("K10abc::server:secret\n"),
	}
}

func TestCollectReadsTheFilesThatExist(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{identity: "CA CERT", "tls/service.key": "SA KEY", "tls/other.key": "not asked for"})
	m, err := Collect(dir, shared)
	if err != nil {
		t.Fatal(err)
	}
	want := Material{identity: []byte("CA CERT"), "tls/service.key": []byte("SA KEY")}
	if !m.Equal(want) {
		t.Fatalf("collected %v, want %v", names(m), names(want))
	}
}

func TestCollectRefusesPathsOutsideTheServerDir(t *testing.T) {
	for _, rel := range []string{"../agent/cred/x.key", "/etc/shadow", "tls/../token", "tls//x", ""} {
		if _, err := Collect(t.TempDir(), []string{rel}); err == nil {
			t.Errorf("Collect(%q) succeeded", rel)
		}
	}
}

func TestApplyWritesFilesWithTheirModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "server")
	m := testMaterial()
	if err := m.Apply(dir, identity); err != nil {
		t.Fatal(err)
	}
	got, err := Collect(dir, shared)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(m) {
		t.Fatalf("applied %v, want %v", names(got), names(m))
	}
	for name, mode := range map[string]os.FileMode{identity: 0o644, "tls/server-ca.key": 0o600, "tls/service.key": 0o600, "token": 0o600} {
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", name, st.Mode().Perm(), err, mode)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "tls")} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("dir %s: mode %v (%v), want 0700", d, st.Mode().Perm(), err)
		}
	}
}

func TestApplyLeavesEqualFilesAlone(t *testing.T) {
	dir := t.TempDir()
	m := testMaterial()
	if err := m.Apply(dir, identity); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "tls", "service.key")
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(key, old, old); err != nil {
		t.Fatal(err)
	}
	m["tls/server-ca.key"] = []byte("NEW CA KEY")
	if err := m.Apply(dir, identity); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(key); err != nil || !st.ModTime().Equal(old) {
		t.Errorf("an unchanged file was rewritten (mtime %v, %v)", st.ModTime(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tls", "server-ca.key")); string(b) != "NEW CA KEY" {
		t.Errorf("changed file holds %q", b)
	}
}

func TestApplyRefusesAnotherClustersDir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{identity: "OTHER CA CERT", "tls/server-ca.key": "OTHER CA KEY"})
	err := testMaterial().Apply(dir, identity)
	if err == nil {
		t.Fatal("Apply over another cluster's CA succeeded")
	}
	for _, want := range []string{dir, "another cluster", "--token"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "CA KEY") || strings.Contains(err.Error(), "CA CERT") {
		t.Errorf("error %q quotes file contents", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tls", "server-ca.key")); string(b) != "OTHER CA KEY" {
		t.Errorf("the refused Apply wrote the CA key anyway")
	}
	if _, err := os.Stat(filepath.Join(dir, "token")); err == nil {
		t.Errorf("the refused Apply wrote the token anyway")
	}
}

func TestApplyOverTheSameCluster(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{identity: "CA CERT"})
	if err := testMaterial().Apply(dir, identity); err != nil {
		t.Fatalf("Apply over the cluster's own CA: %v", err)
	}
}

func TestApplyNeedsTheIdentity(t *testing.T) {
	m := testMaterial()
	delete(m, identity)
	if err := m.Apply(t.TempDir(), identity); err == nil || !strings.Contains(err.Error(), identity) {
		t.Fatalf("Apply without %s: %v", identity, err)
	}
}

func TestApplyRefusesPathsOutsideTheServerDir(t *testing.T) {
	parent := t.TempDir()
	m := testMaterial()
	m["../escaped"] = []byte("x")
	if err := m.Apply(filepath.Join(parent, "server"), identity); err == nil {
		t.Fatal("Apply wrote outside the server dir")
	}
	if _, err := os.Stat(filepath.Join(parent, "escaped")); err == nil {
		t.Fatal("a file was written outside the server dir")
	}
}

func names(m Material) []string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	return n
}
