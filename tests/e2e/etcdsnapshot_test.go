package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/tests/nodetest"
)

// TestEtcdSnapshotRestore saves a snapshot of a running server on embedded
// etcd, makes more changes, and restores the snapshot with --cluster-reset
// --cluster-reset-restore-path: the server restores, exits, and started
// again without the flags serves the cluster as it was at the snapshot.
// Meanwhile the server's scheduled snapshots run every minute and keep the
// newest one only.
func TestEtcdSnapshotRestore(t *testing.T) {
	s := newServer(t, "--cluster-init", "--etcd-snapshot-schedule-cron", "* * * * *", "--etcd-snapshot-retention", "1")
	normal := slices.Clone(s.args)
	s.start()
	s.waitReady()
	s.kubectl("create", "configmap", "before-snapshot", "--from-literal=v=1")

	etcdSnapshot := func(args ...string) (int, string) {
		return runSkiff(t, 2*time.Minute, append(append([]string{"etcd-snapshot"}, args...), "--config", "", "--data-dir", s.dataDir)...)
	}
	code, out := etcdSnapshot("save", "--name", "e2e")
	snap := strings.TrimSpace(out)
	if code != 0 || !regexp.MustCompile(`^e2e-.+-[0-9]+$`).MatchString(filepath.Base(snap)) || filepath.Dir(snap) != s.paths().Server.SnapshotsDir {
		t.Fatalf("etcd-snapshot save: exit %d: %s", code, out)
	}
	assertMode(t, snap, 0o600)
	if code, out := etcdSnapshot("ls"); code != 0 || !strings.Contains(out, filepath.Base(snap)) {
		t.Fatalf("etcd-snapshot ls: exit %d: %s", code, out)
	}
	if code, out := runSkiff(t, time.Minute, "datastore", "snapshot", "--config", "", "--data-dir", s.dataDir); code == 0 {
		t.Errorf("a SQLite snapshot of a server on etcd succeeded: %s", out)
	}

	s.kubectl("create", "configmap", "after-snapshot")
	s.kubectl("delete", "configmap", "before-snapshot")

	// The scheduled snapshots: one a minute, the older ones deleted.
	scheduled := regexp.MustCompile(`etcd snapshots: deleted (etcd-snapshot-\S+), beyond the 1 kept`)
	eventually(t, 3*time.Minute, func() error {
		if !scheduled.MatchString(s.log()[s.logStart:]) {
			return fmt.Errorf("no scheduled snapshot pruned yet")
		}
		return nil
	})
	entries, err := os.ReadDir(s.paths().Server.SnapshotsDir)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "etcd-snapshot-") {
			kept = append(kept, e.Name())
		}
	}
	if len(kept) != 1 {
		t.Errorf("scheduled snapshots kept: %v, want one", kept)
	}

	s.terminate()
	if code, out := etcdSnapshot("save"); code == 0 || !strings.Contains(out, "is not running") {
		t.Fatalf("etcd-snapshot save of a stopped server: exit %d: %s", code, out)
	}

	s.args = append(slices.Clone(normal), "--cluster-reset", "--cluster-reset-restore-path", snap)
	code, out = s.runToExit(3 * time.Minute)
	if code != 0 || !strings.Contains(out, "is now the only member of a new etcd cluster") || !strings.Contains(out, "without --cluster-reset") {
		t.Fatalf("restore: exit %d:\n%s", code, tail(out, 3000))
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "level=") {
			t.Log(line)
		}
	}
	old, _ := filepath.Glob(filepath.Join(s.paths().Server.DBDir, "etcd-old-*"))
	if len(old) != 1 {
		t.Errorf("former etcd data kept in %v, want one etcd-old-* dir", old)
	}
	// Left with the flags, the next start refuses to restore again.
	if code, out := s.runToExit(3 * time.Minute); code == 0 || !strings.Contains(out, "already reset") {
		t.Fatalf("a second start with the reset flags: exit %d:\n%s", code, tail(out, 3000))
	}

	s.args = normal
	s.start()
	s.waitReady()
	s.checkRestored()
	s.terminate()
}

// runToExit starts the server and waits up to timeout for it to exit on
// its own; it returns the exit code and this run's output.
func (s *server) runToExit(timeout time.Duration) (int, string) {
	s.t.Helper()
	s.start()
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.kill()
		s.t.Fatalf("skiff server did not exit within %s; output:\n%s", timeout, tail(s.log()[s.logStart:], 5000))
	}
	code := s.cmd.ProcessState.ExitCode()
	s.cmd = nil
	return code, s.log()[s.logStart:]
}

// terminate stops the server with SIGTERM whatever its exit status: with
// leader election, which a server on etcd has, the controller-manager
// ends the process with status 1 once it stops leading (upstream's
// OnStoppedLeading), which is not what these tests are about.
func (s *server) terminate() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	if !nodetest.Terminate(s.cmd.Process, s.exited, 90*time.Second) {
		s.t.Fatal("skiff server did not stop within 90s of SIGTERM")
	}
	s.cmd = nil
}
