package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

func TestServerEtcdSnapshotAndResetFlags(t *testing.T) {
	isolate(t)
	snapshot := writeFile(t, "on-demand-node-1700000000", "x")
	cfg := mustSucceed(t, run(t, "server", "--config", "",
		"--etcd-snapshot-schedule-cron", "*/5 * * * *",
		"--etcd-snapshot-retention", "2",
		"--etcd-snapshot-dir", "/srv/snapshots",
		"--disable-etcd-snapshots",
		"--cluster-reset",
		"--cluster-reset-restore-path", snapshot,
	))
	s := cfg.EtcdSnapshots
	if s.Cron != "*/5 * * * *" || s.Retention != 2 || s.Dir != "/srv/snapshots" || !s.Disabled {
		t.Errorf("snapshot settings %+v", s)
	}
	if !cfg.ClusterReset || cfg.ClusterResetRestorePath != snapshot || cfg.Datastore.Kind != config.EmbeddedEtcd {
		t.Errorf("reset %v %q, datastore kind %v", cfg.ClusterReset, cfg.ClusterResetRestorePath, cfg.Datastore.Kind)
	}

	cfg = mustSucceed(t, run(t, "server", "--config", ""))
	if s := cfg.EtcdSnapshots; s.Cron != config.DefaultEtcdSnapshotCron || s.Retention != config.DefaultEtcdSnapshotRetention || s.Dir != cfg.Paths.Server.SnapshotsDir || s.Disabled {
		t.Errorf("default snapshot settings %+v", s)
	}
}

// snapshotDir makes a snapshot dir holding etcd snapshots and a SQLite
// datastore snapshot.
func newSnapshotDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, size := range map[string]int{
		"on-demand-node-a-1700000100":     10,
		"etcd-snapshot-node-a-1700000000": 20,
		"snapshot-20260102T030405Z.db":    30,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestEtcdSnapshotList(t *testing.T) {
	isolate(t)
	dir := newSnapshotDir(t)
	r := run(t, "etcd-snapshot", "ls", "--config", "", "--etcd-snapshot-dir", dir)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := "NAME                             SIZE  CREATED\n" +
		"etcd-snapshot-node-a-1700000000  20    2023-11-14T22:13:20Z\n" +
		"on-demand-node-a-1700000100      10    2023-11-14T22:15:00Z\n"
	if r.stdout != want {
		t.Errorf("ls printed\n%s\nwant\n%s", r.stdout, want)
	}

	r = run(t, "etcd-snapshot", "list", "--config", "", "--etcd-snapshot-dir", dir, "-o", "json")
	var listed []struct {
		Name, Path string
		Size       int64
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || r.code != 0 {
		t.Fatalf("ls -o json: exit %d, %v: %s", r.code, err, r.stdout)
	}
	if len(listed) != 2 || listed[1].Name != "on-demand-node-a-1700000100" || listed[1].Size != 10 || listed[1].Path != filepath.Join(dir, listed[1].Name) {
		t.Errorf("ls -o json: %+v", listed)
	}

	// The dir defaults to the data dir's, and may not exist yet.
	dataDir := t.TempDir()
	r = run(t, "etcd-snapshot", "ls", "--config", "", "--data-dir", dataDir, "-o", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("ls of a data dir without snapshots: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "etcd-snapshot", "ls", "--config", "", "-o", "yaml"); r.code == 0 || !strings.Contains(r.stderr, "use table or json") {
		t.Errorf("ls -o yaml: exit %d, %s", r.code, r.stderr)
	}
}

func TestEtcdSnapshotDirFromConfigFile(t *testing.T) {
	isolate(t)
	dir := newSnapshotDir(t)
	file := writeFile(t, "config.yaml", "etcd-snapshot-dir: "+dir+"\n")
	r := run(t, "etcd-snapshot", "ls", "--config", file)
	if r.code != 0 || !strings.Contains(r.stdout, "on-demand-node-a-1700000100") {
		t.Errorf("ls with the dir in the config file: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
}

func TestEtcdSnapshotDelete(t *testing.T) {
	isolate(t)
	dir := newSnapshotDir(t)
	r := run(t, "etcd-snapshot", "delete", "--config", "", "--etcd-snapshot-dir", dir, "on-demand-node-a-1700000100", "missing-node-a-1", "snapshot-20260102T030405Z.db")
	if r.code == 0 {
		t.Fatal("deleting a missing snapshot and a SQLite one succeeded")
	}
	if r.stdout != "deleted on-demand-node-a-1700000100\n" {
		t.Errorf("delete printed %q", r.stdout)
	}
	if lines := strings.Count(r.stderr, "\n"); lines != 1 || !strings.Contains(r.stderr, "no snapshot missing-node-a-1") || !strings.Contains(r.stderr, `"snapshot-20260102T030405Z.db" is not the name of a snapshot`) {
		t.Errorf("delete errors (%d lines): %s", lines, r.stderr)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 2 {
		t.Errorf("left %d files, want the two not deleted", len(left))
	}
	if r := run(t, "etcd-snapshot", "rm", "--config", "", "--etcd-snapshot-dir", dir); r.code == 0 || !strings.Contains(r.stderr, "name the snapshots to delete") {
		t.Errorf("delete without names: exit %d, %s", r.code, r.stderr)
	}
}

func TestEtcdSnapshotSaveNeedsARunningEtcdServer(t *testing.T) {
	isolate(t)
	sqlite := t.TempDir()
	l := layout.New(sqlite).Server
	if err := os.MkdirAll(l.DBDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.StateDB, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"save"}, {"prune"}} {
		r := run(t, append(append([]string{"etcd-snapshot"}, args...), "--config", "", "--data-dir", sqlite)...)
		if r.code == 0 || !strings.Contains(r.stderr, "keeps its data in SQLite") || !strings.Contains(r.stderr, "skiff datastore snapshot") {
			t.Errorf("%s on a SQLite server: exit %d, %s", args[0], r.code, r.stderr)
		}
	}

	empty := t.TempDir()
	if r := run(t, "etcd-snapshot", "save", "--config", "", "--data-dir", empty); r.code == 0 || !strings.Contains(r.stderr, "no embedded etcd in "+empty) {
		t.Errorf("save on an empty data dir: exit %d, %s", r.code, r.stderr)
	}

	// A data dir whose server ran etcd but is stopped.
	if conn, err := net.Dial("tcp", "127.0.0.1:2379"); err == nil {
		conn.Close()
		t.Skip("an etcd member runs on this host's port 2379")
	}
	stopped := t.TempDir()
	l = layout.New(stopped).Server
	wal := filepath.Join(l.EtcdDir, "member", "wal")
	if err := os.MkdirAll(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wal, "0000000000000000-0000000000000000.wal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(l.TLSDir, "etcd")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "client.crt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "etcd-snapshot", "save", "--config", "", "--data-dir", stopped)
	if r.code == 0 || !strings.Contains(r.stderr, "is not running") || !strings.Contains(r.stderr, "https://127.0.0.1:2379") {
		t.Errorf("save while the server is stopped: exit %d, %s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(l.SnapshotsDir); len(entries) != 0 {
		t.Errorf("a failed save left %d files", len(entries))
	}
}
