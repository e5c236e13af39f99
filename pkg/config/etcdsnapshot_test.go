package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEtcdSnapshotDefaults(t *testing.T) {
	s := defaultServer()
	s.ClusterInit = true
	c, err := s.Complete()
	if err != nil {
		t.Fatal(err)
	}
	snaps := c.EtcdSnapshots
	if snaps.Disabled || snaps.Cron != DefaultEtcdSnapshotCron || snaps.Dir != c.Paths.Server.SnapshotsDir || snaps.Schedule == nil {
		t.Errorf("snapshot settings %+v", snaps)
	}
	if c.ClusterReset || c.ClusterResetRestorePath != "" {
		t.Errorf("a reset without asking: %v %q", c.ClusterReset, c.ClusterResetRestorePath)
	}
}

func TestEtcdSnapshotSchedule(t *testing.T) {
	schedule, err := parseCron(DefaultEtcdSnapshotCron)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 5, 30, 0, 0, time.Local)
	var got []time.Time
	for range 3 {
		at = schedule.Next(at)
		got = append(got, at)
	}
	want := []time.Time{
		time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local),
		time.Date(2026, 3, 2, 0, 0, 0, 0, time.Local),
		time.Date(2026, 3, 2, 12, 0, 0, 0, time.Local),
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("run %d at %v, want %v", i, got[i], want[i])
		}
	}

	// A schedule given in its five fields; "30 2 * * 1": 02:30 on Mondays.
	s := defaultServer()
	s.EtcdSnapshotScheduleCron = "30 2 * * 1"
	c, err := s.Complete()
	if err != nil {
		t.Fatal(err)
	}
	next := c.EtcdSnapshots.Schedule.Next(time.Date(2026, 3, 1, 5, 30, 0, 0, time.Local)) // a Sunday
	if want := time.Date(2026, 3, 2, 2, 30, 0, 0, time.Local); !next.Equal(want) {
		t.Errorf("30 2 * * 1 after Sunday morning: %v, want %v", next, want)
	}
}

func TestValidateEtcdSnapshotsAndReset(t *testing.T) {
	snapshot := filepath.Join(t.TempDir(), "on-demand-node-1700000000")
	if err := os.WriteFile(snapshot, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		modify  func(*Server)
		wantErr []string
	}{
		{"a five-field schedule", func(s *Server) { s.EtcdSnapshotScheduleCron = "*/30 * * * *" }, nil},
		{"a descriptor", func(s *Server) { s.EtcdSnapshotScheduleCron = "@daily" }, nil},
		{"six fields", func(s *Server) { s.EtcdSnapshotScheduleCron = "0 0 */12 * * *" }, []string{"--etcd-snapshot-schedule-cron", "five fields"}},
		{"a bad hour", func(s *Server) { s.EtcdSnapshotScheduleCron = "0 25 * * *" }, []string{"--etcd-snapshot-schedule-cron"}},
		{"a negative retention", func(s *Server) { s.EtcdSnapshotRetention = -1 }, []string{"--etcd-snapshot-retention -1", "0 to keep them all"}},
		{"a relative dir", func(s *Server) { s.EtcdSnapshotDir = "backups" }, []string{"--etcd-snapshot-dir", "absolute"}},
		{"a reset", func(s *Server) { s.ClusterReset = true }, nil},
		{"a restore", func(s *Server) { s.ClusterReset, s.ClusterResetRestorePath = true, snapshot }, nil},
		{"a restore without --cluster-reset", func(s *Server) { s.ClusterResetRestorePath = snapshot }, []string{"needs --cluster-reset"}},
		{"a missing snapshot", func(s *Server) {
			s.ClusterReset, s.ClusterResetRestorePath = true, snapshot+"-missing"
		}, []string{"--cluster-reset-restore-path " + snapshot + "-missing", "skiff etcd-snapshot ls"}},
		{"a reset of an external datastore", func(s *Server) {
			s.ClusterReset, s.DatastoreEndpoint = true, "postgres://db/skiff"
		}, []string{"--cluster-reset is for embedded etcd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultServer()
			tt.modify(s)
			err := s.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestClusterResetMeansEmbeddedEtcd(t *testing.T) {
	s := defaultServer()
	s.ClusterReset = true
	c, err := s.Complete()
	if err != nil {
		t.Fatal(err)
	}
	if c.Datastore.Kind != EmbeddedEtcd || !c.ClusterReset {
		t.Errorf("--cluster-reset alone: datastore kind %v, reset %v", c.Datastore.Kind, c.ClusterReset)
	}
}
