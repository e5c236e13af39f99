package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDatastoreSnapshotRestore takes a snapshot of a running server, makes
// more changes, and restores the snapshot into the stopped server: the
// cluster is back as it was at the snapshot.
func TestDatastoreSnapshotRestore(t *testing.T) {
	s := newServer(t)
	s.start()
	s.waitReady()
	s.kubectl("create", "configmap", "before-snapshot", "--from-literal=v=1")

	snap := filepath.Join(t.TempDir(), "backup.db")
	code, out := runSkiff(t, time.Minute, "datastore", "snapshot", "--data-dir", s.dataDir, "--config", "", "--output", snap)
	if code != 0 || strings.TrimSpace(out) != snap {
		t.Fatalf("snapshot of a running server: exit %d: %s", code, out)
	}
	assertMode(t, snap, 0o600)
	if code, out := runSkiff(t, time.Minute, "datastore", "snapshot", "--data-dir", s.dataDir, "--config", "", "--output", snap); code == 0 || !strings.Contains(out, "already exists") {
		t.Fatalf("snapshot over an existing file: exit %d: %s", code, out)
	}

	s.kubectl("create", "configmap", "after-snapshot")
	s.kubectl("delete", "configmap", "before-snapshot")

	if code, out := runSkiff(t, time.Minute, "datastore", "restore", "--data-dir", s.dataDir, "--config", "", snap); code == 0 || !strings.Contains(out, "running") {
		t.Fatalf("restore into a running server must be refused: exit %d: %s", code, out)
	}
	s.stop()
	notADB := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(notADB, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runSkiff(t, time.Minute, "datastore", "restore", "--data-dir", s.dataDir, "--config", "", notADB); code == 0 || !strings.Contains(out, "junk.db") {
		t.Fatalf("restore of a non-snapshot: exit %d: %s", code, out)
	}
	if code, out := runSkiff(t, time.Minute, "datastore", "restore", "--data-dir", s.dataDir, "--config", "", snap); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, out)
	}

	s.start()
	s.waitReady()
	s.checkRestored()
	s.stop()
}

// checkRestored checks a server restarted on a snapshot: the ConfigMap
// "before-snapshot" (v=1) is back, "after-snapshot" is gone, and it takes
// writes.
func (s *server) checkRestored() {
	s.t.Helper()
	if got := s.kubectl("get", "configmap", "before-snapshot", "-o", "jsonpath={.data.v}"); got != "1" {
		s.t.Fatalf("configmap from the snapshot: %q", got)
	}
	if _, err := s.kubectlErr("get", "configmap", "after-snapshot"); err == nil {
		s.t.Fatal("a configmap created after the snapshot survived the restore")
	}
	s.kubectl("create", "configmap", "after-restore")
}
