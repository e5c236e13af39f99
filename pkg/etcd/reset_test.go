package etcd

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestResetMakesASurvivorAClusterOfOne(t *testing.T) {
	first := newMember(t, "server-1", nil)
	r1 := start(t, first)
	put(t, connect(t, first.Client.Get()), "written-before", "the loss")
	second := newMember(t, "server-2", first)
	second.Join = []string{first.advertisedClientURL()}
	r2 := start(t, second)
	if got := get(t, connect(t, second.Client.Get()), "written-before"); got != "the loss" {
		t.Fatalf("the second member reads %q", got)
	}
	// server-1 is lost for good; server-2 alone has no quorum.
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	r2.stop()

	if _, err := second.Reset(ctxTimeout(t, time.Minute), "", time.Now()); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if _, err := os.Stat(ResetMarker(second.DataDir)); err != nil {
		t.Errorf("the reset is not recorded: %v", err)
	}
	// Started with the reset flags again, before a normal start: refused.
	_, err := second.Reset(ctxTimeout(t, time.Minute), "", time.Now())
	t.Logf("a second reset: %v", err)
	if err == nil || !strings.Contains(err.Error(), "without --cluster-reset") || !strings.Contains(err.Error(), ResetMarker(second.DataDir)) {
		t.Errorf("a second reset without a normal start in between: %v", err)
	}

	r2 = start(t, second)
	if err := ClearResetMarker(second.DataDir); err != nil {
		t.Fatal(err)
	}
	if got := memberNames(t, second.Client.Get()); !slices.Equal(got, []string{"server-2"}) {
		t.Fatalf("members after the reset: %v", got)
	}
	cli := connect(t, second.Client.Get())
	if got := get(t, cli, "written-before"); got != "the loss" {
		t.Errorf("after the reset the key reads %q: the member lost its data", got)
	}
	put(t, cli, "written-after", "the reset")

	// The lost server, its data emptied, joins the new cluster.
	if err := os.RemoveAll(first.DataDir); err != nil {
		t.Fatal(err)
	}
	first.Join = []string{second.advertisedClientURL()}
	r1 = start(t, first)
	if got := get(t, connect(t, first.Client.Get()), "written-after"); got != "the reset" {
		t.Errorf("the rejoined member reads %q", got)
	}
	// The leader first, as in TestMembersJoinAndLeave.
	r2.stop()
	r1.stop()
}

func TestResetWithoutDataIsExplained(t *testing.T) {
	e := newMember(t, "server-1", nil)
	_, err := e.Reset(ctxTimeout(t, time.Minute), "", time.Now())
	t.Logf("reset without data: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no etcd data in "+e.DataDir) {
		t.Fatalf("reset of a member that never ran: %v", err)
	}
}

func TestRestoreMovesTheFormerDataAside(t *testing.T) {
	e := newMember(t, "server-1", nil)
	r := start(t, e)
	cli := connect(t, e.Client.Get())
	put(t, cli, "saved", "a")
	s, err := SaveSnapshot(ctxTimeout(t, 30*time.Second), e.Client.Get(), t.TempDir(), OnDemandSnapshotName, e.MemberName, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, "lost", "b")
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// A file that is no snapshot changes nothing.
	bad := filepath.Join(t.TempDir(), "truncated")
	whole, err := os.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, whole[:len(whole)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	parent := filepath.Dir(e.DataDir)
	_, err = e.Reset(ctxTimeout(t, time.Minute), bad, time.Now())
	t.Logf("restore of a truncated snapshot: %v", err)
	if err == nil || !strings.Contains(err.Error(), "cannot restore "+bad) {
		t.Fatalf("restore of a truncated snapshot: %v", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 || !HasData(e.DataDir) {
		t.Fatalf("a failed restore touched %s: %v", parent, entries)
	}
	if _, err := e.Reset(ctxTimeout(t, time.Minute), filepath.Join(parent, "missing"), time.Now()); err == nil || !strings.Contains(err.Error(), "cannot read the snapshot") {
		t.Errorf("restore of a missing file: %v", err)
	}

	at := time.Unix(1700000000, 0)
	aside, err := e.Reset(ctxTimeout(t, time.Minute), s.Path, at)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(parent, fmt.Sprintf("etcd-old-%d", at.Unix())); aside != want {
		t.Errorf("former data moved to %q, want %q", aside, want)
	}
	if !HasData(aside) {
		t.Errorf("the former data is not whole in %s", aside)
	}
	if st, err := os.Stat(e.DataDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("restored data dir: %v, mode %v", err, st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(parent, ".etcd-restore")); !os.IsNotExist(err) {
		t.Errorf("the restore's work dir is left: %v", err)
	}
	start(t, e)
	if got := keys(t, connect(t, e.Client.Get())); !slices.Equal(got, []string{"saved"}) {
		t.Errorf("keys after the restore: %v, want only the saved one", got)
	}
}
