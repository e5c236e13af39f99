package etcd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestSnapshotFileName(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	if got, want := SnapshotFileName("on-demand", "node-a", at), fmt.Sprintf("on-demand-node-a-%d", at.Unix()); got != want {
		t.Errorf("file name %q, want %q", got, want)
	}
	for _, name := range []string{"on-demand", "etcd-snapshot", "before_upgrade.1"} {
		if err := ValidateSnapshotName(name); err != nil {
			t.Errorf("name %q refused: %v", name, err)
		}
	}
	for _, name := range []string{"", ".hidden", "a/b", "a b", "a\x00b"} {
		if err := ValidateSnapshotName(name); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}

func names(snapshots []Snapshot) []string {
	var out []string
	for _, s := range snapshots {
		out = append(out, s.Name)
	}
	return out
}

func touch(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListSnapshotsOldestFirstWithoutOtherFiles(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir,
		"on-demand-node-a-1700000300",
		"etcd-snapshot-node-a-1700000100",
		"etcd-snapshot-node-b-1700000200",
		// The SQLite datastore's snapshots, a save in progress, other files.
		"snapshot-20260102T030405Z.db",
		".etcd-snapshot-node-a-1700000400.partial",
		"notes.txt",
	)
	if err := os.Mkdir(filepath.Join(dir, "dir-node-1700000000"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := ListSnapshots(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"etcd-snapshot-node-a-1700000100", "etcd-snapshot-node-b-1700000200", "on-demand-node-a-1700000300"}
	if !slices.Equal(names(got), want) {
		t.Fatalf("listed %v, want %v", names(got), want)
	}
	if got[0].Created.Unix() != 1700000100 || got[0].Size != int64(len(want[0])) || got[0].Path != filepath.Join(dir, want[0]) {
		t.Errorf("first snapshot %+v", got[0])
	}

	none, err := ListSnapshots(filepath.Join(dir, "missing"))
	if err != nil || len(none) != 0 {
		t.Errorf("a missing dir lists %v, %v; want nothing", none, err)
	}
}

func TestExpiredKeepsTheNewestOfThisNodeAndName(t *testing.T) {
	var all []Snapshot
	add := func(name string, unix int64) {
		all = append(all, Snapshot{Name: name, Created: time.Unix(unix, 0)})
	}
	// Out of order, as a listing of a dir touched by hand could be.
	add("etcd-snapshot-node-a-300", 300)
	add("etcd-snapshot-node-a-100", 100)
	add("etcd-snapshot-node-a-200", 200)
	add("etcd-snapshot-node-a-400", 400)
	// Another node's, whose name starts like this one's, and another
	// name's: never this node's to prune.
	add("etcd-snapshot-node-a-b-50", 50)
	add("etcd-snapshot-node-b-60", 60)
	add("on-demand-node-a-70", 70)

	if got, want := names(Expired(all, "etcd-snapshot", "node-a", 2)), []string{"etcd-snapshot-node-a-100", "etcd-snapshot-node-a-200"}; !slices.Equal(got, want) {
		t.Errorf("expired with 2 kept: %v, want %v", got, want)
	}
	if got := Expired(all, "etcd-snapshot", "node-a", 4); len(got) != 0 {
		t.Errorf("expired with 4 kept: %v", names(got))
	}
	if got := Expired(all, "etcd-snapshot", "node-a", 0); len(got) != 0 {
		t.Errorf("a retention of 0 keeps all, expired %v", names(got))
	}
	if got, want := names(Expired(all, "on-demand", "node-a", 1)), []string(nil); !slices.Equal(got, want) {
		t.Errorf("on-demand expired %v", got)
	}
	if got, want := names(Expired(all, "etcd-snapshot", "node-a-b", 1)), []string(nil); !slices.Equal(got, want) {
		t.Errorf("node-a-b's expired %v", got)
	}
}

func TestPruneAndDeleteSnapshots(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir,
		"etcd-snapshot-node-a-100", "etcd-snapshot-node-a-200", "etcd-snapshot-node-a-300",
		"etcd-snapshot-node-b-150", "on-demand-node-a-250", "snapshot-20260102T030405Z.db",
	)
	removed, err := PruneSnapshots(dir, ScheduledSnapshotName, "node-a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(removed), []string{"etcd-snapshot-node-a-100", "etcd-snapshot-node-a-200"}; !slices.Equal(got, want) {
		t.Errorf("pruned %v, want %v", got, want)
	}
	if err := DeleteSnapshots(dir, "on-demand-node-a-250"); err != nil {
		t.Fatal(err)
	}
	left, _ := ListSnapshots(dir)
	if got, want := names(left), []string{"etcd-snapshot-node-b-150", "etcd-snapshot-node-a-300"}; !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}

	err = DeleteSnapshots(dir, "on-demand-node-a-250", "../etcd-snapshot-node-b-150", "snapshot-20260102T030405Z.db", "etcd-snapshot-node-b-150")
	if err == nil {
		t.Fatal("deleting missing and foreign files succeeded")
	}
	t.Logf("delete: %v", err)
	for _, want := range []string{"no snapshot on-demand-node-a-250", `"../etcd-snapshot-node-b-150" is not the name of a snapshot`, `"snapshot-20260102T030405Z.db" is not`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("delete error lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshot-20260102T030405Z.db")); err != nil {
		t.Error("the SQLite snapshot was deleted")
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd-snapshot-node-b-150")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the valid name among bad ones was not deleted")
	}
}

// keys lists every key of the cluster, sorted.
func keys(t *testing.T, cli *clientv3.Client) []string {
	t.Helper()
	resp, err := cli.Get(ctxTimeout(t, 10*time.Second), "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	slices.Sort(out)
	return out
}

func TestSaveThenRestoreIntoANewDataDir(t *testing.T) {
	e := newMember(t, "server-1", nil)
	r := start(t, e)
	cli := connect(t, e.Client.Get())
	put(t, cli, "saved-1", "a")
	put(t, cli, "saved-2", "b")

	dir := filepath.Join(t.TempDir(), "snapshots")
	at := time.Unix(1700000000, 0)
	s, err := SaveSnapshot(ctxTimeout(t, 30*time.Second), e.Client.Get(), dir, OnDemandSnapshotName, e.MemberName, at)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "on-demand-server-1-1700000000"); s.Path != want || s.Name != filepath.Base(want) || !s.Created.Equal(at) {
		t.Errorf("snapshot %+v, want it at %s", s, want)
	}
	st, err := os.Stat(s.Path)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != s.Size || s.Size == 0 {
		t.Errorf("snapshot file: %v, mode %v, size %d (reported %d)", err, st.Mode().Perm(), st.Size(), s.Size)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the snapshot dir holds %d files, want only the snapshot", len(entries))
	}
	if _, err := SaveSnapshot(ctxTimeout(t, 30*time.Second), e.Client.Get(), dir, OnDemandSnapshotName, e.MemberName, at); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("a second snapshot under the same name: %v", err)
	}

	put(t, cli, "after-the-snapshot", "c")
	put(t, cli, "saved-1", "changed")
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	fresh := newMember(t, "server-1", e)
	aside, err := fresh.Reset(ctxTimeout(t, time.Minute), s.Path, time.Now())
	if err != nil {
		t.Fatalf("restore into a new data dir: %v", err)
	}
	if aside != "" {
		t.Errorf("a restore into an empty data dir moved %s aside", aside)
	}
	if err := ClearResetMarker(fresh.DataDir); err != nil {
		t.Fatal(err)
	}
	start(t, fresh)
	restored := connect(t, fresh.Client.Get())
	if got, want := keys(t, restored), []string{"saved-1", "saved-2"}; !slices.Equal(got, want) {
		t.Fatalf("restored keys %v, want %v", got, want)
	}
	if got := get(t, restored, "saved-1"); got != "a" {
		t.Errorf("saved-1 reads %q after the restore, want the saved a", got)
	}
	if got := memberNames(t, fresh.Client.Get()); !slices.Equal(got, []string{"server-1"}) {
		t.Errorf("members of the restored cluster: %v", got)
	}
	// Watchers that resume from a revision seen before the restore must be
	// told to list again.
	resp, err := restored.Get(ctxTimeout(t, 10*time.Second), "saved-1")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision < revisionBump {
		t.Errorf("revision %d after the restore, want it bumped past %d", resp.Header.Revision, revisionBump)
	}
	put(t, restored, "written-after-the-restore", "d")
}

func TestSaveFromAStoppedServerIsExplained(t *testing.T) {
	e := newMember(t, "server-1", nil)
	c := Client{Endpoints: []string{e.advertisedClientURL()}, CAFile: e.PKI.ServerCACert, CertFile: e.PKI.ClientCert, KeyFile: e.PKI.ClientKey}
	dir := t.TempDir()
	_, err := SaveSnapshot(ctxTimeout(t, 10*time.Second), c, dir, OnDemandSnapshotName, "server-1", time.Now())
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("save with no member running: %v, want ErrNotRunning", err)
	}
	if _, err := MemberName(ctxTimeout(t, 10*time.Second), c); !errors.Is(err, ErrNotRunning) {
		t.Errorf("member name with no member running: %v, want ErrNotRunning", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed save left %d files", len(entries))
	}

	start(t, e)
	name, err := MemberName(ctxTimeout(t, 10*time.Second), c)
	if err != nil || name != "server-1" {
		t.Errorf("member name %q, %v", name, err)
	}
}
