package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// walLimit is pkg/datastore's journal_size_limit: once a checkpoint has
// reset the WAL, SQLite truncates it to this size.
const walLimit = 8 << 20

// walBound is the most the WAL may reach while the churn runs. Outside
// compactions it stays near the limit plus SQLite's 1000-page (4 MiB)
// autocheckpoint; a compaction deletes its batches back to back while
// readers hold the WAL, and grows it with the amount compacted (33 and
// 46 MiB in two soaks, for 38,000 revisions), until kine's checkpoint after
// the compaction lets SQLite truncate it back to the limit.
const walBound = 64 << 20

// TestDatastoreStaysSmall churns ConfigMaps through a control-plane-only
// server and records the sizes of its SQLite database and WAL once a
// second. The WAL must stay bounded while the server runs, and once the
// server restarts (kine VACUUMs at start, which writes the whole database
// through the WAL) it must shrink back to the limit instead of keeping the
// database's size.
//
// CI churns 2000 ConfigMaps in 40s, which is shorter than kine's 5-minute
// compaction interval. The soak of the reliability doc churns 50,000 over
// 20 minutes and runs 6 more minutes so that a compaction covers the whole
// churn:
//
//	SKIFF_DATASTORE_SOAK_OBJECTS=50000 SKIFF_DATASTORE_SOAK_DURATION=20m SKIFF_DATASTORE_SOAK_SETTLE=6m
func TestDatastoreStaysSmall(t *testing.T) {
	objects := envInt(t, "SKIFF_DATASTORE_SOAK_OBJECTS", 2000)
	duration := envDuration(t, "SKIFF_DATASTORE_SOAK_DURATION", 40*time.Second)
	settle := envDuration(t, "SKIFF_DATASTORE_SOAK_SETTLE", 0)
	s := newServerOnFreePorts(t)
	s.start()
	s.waitReady()
	cs := s.clientset()
	ctx, cancel := context.WithTimeout(context.Background(), duration+settle+10*time.Minute)
	defer cancel()
	ns := "churn"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	sampler := sampleDBSizes(t, s.stateDB())
	started := time.Now()
	err := churnConfigMaps(ctx, cs, ns, objects, 500, 8, duration, 1024)
	churned := time.Since(started)
	if err != nil {
		sampler.finish()
		t.Fatalf("churn: %v", err)
	}
	time.Sleep(settle)
	samples := sampler.finish()
	peakDB, peakWAL := peaks(samples, 0)
	// Steady: the last 5 minutes, which hold one compaction when the run
	// is long enough.
	last := samples[len(samples)-1]
	steadyDB, steadyWAL := peaks(samples, last.at-5*time.Minute)
	t.Logf("churned %d ConfigMaps (create, update, delete) in %s, then waited %s: state.db peak %s, last 5 min %s, end %s; WAL peak %s, last 5 min %s, end %s",
		objects, churned.Round(time.Second), settle, mib(peakDB), mib(steadyDB), mib(last.db), mib(peakWAL), mib(steadyWAL), mib(last.wal))
	if peakWAL > walBound {
		t.Errorf("the WAL reached %s while the server ran, want at most %s", mib(peakWAL), mib(walBound))
	}
	// kine keeps 5 to 10 minutes of history: from then on the freed pages
	// are reused and the database stops growing. Without compaction it
	// would keep growing with every write.
	if duration >= 12*time.Minute {
		half := dbSizeAt(samples, duration/2)
		second, _ := peaks(samples, duration/2)
		if second > half+half/10 {
			t.Errorf("state.db grew from %s to %s in the second half of the churn, want it to stay within 10%%: compaction does not keep it bounded", mib(half), mib(second))
		}
	}

	// A burst of large writes grows the WAL past its limit between two
	// checkpoints; once a checkpoint has reset it and ordinary writes go on,
	// SQLite must give the space back instead of keeping the burst's size.
	sampler = sampleDBSizes(t, s.stateDB())
	if err := churnConfigMaps(ctx, cs, ns, 32, 32, 8, 0, 900<<10); err != nil {
		sampler.finish()
		t.Fatalf("burst: %v", err)
	}
	if err := churnConfigMaps(ctx, cs, ns, 200, 10, 2, 20*time.Second, 1024); err != nil {
		sampler.finish()
		t.Fatalf("churn after the burst: %v", err)
	}
	samples = sampler.finish()
	_, burstWAL := peaks(samples, 0)
	last = samples[len(samples)-1]
	_, afterWAL := peaks(samples, last.at-10*time.Second)
	t.Logf("a burst of 32 ConfigMaps of 900 KiB, then 20s of small writes: WAL peak %s, last 10s %s", mib(burstWAL), mib(afterWAL))
	if afterWAL > walLimit+4<<20 {
		t.Errorf("after a burst of large writes the WAL stays at %s (peak %s), want at most %s once checkpoints have reset it", mib(afterWAL), mib(burstWAL), mib(walLimit+4<<20))
	}

	s.stop()
	s.start()
	s.waitReady()
	// The startup VACUUM rewrote the whole database into the WAL; the next
	// checkpoint must give that space back.
	var wal int64
	deadline := time.Now().Add(time.Minute)
	for {
		wal = fileSize(t, s.stateDB()+"-wal")
		if wal <= walLimit || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("after a restart: state.db %s, WAL %s", mib(fileSize(t, s.stateDB())), mib(wal))
	if wal > walLimit {
		t.Errorf("a minute after the restart the WAL is %s, want at most %s", mib(wal), mib(walLimit))
	}
	s.stop()
	integrityCheck(t, s.stateDB())
}

// TestDatastoreShrinksOnStart bloats a stopped server's database the way
// an older version could leave it (hundreds of MiB of free pages) and
// checks that the next start gives the space back by itself, keeping what
// was stored. SKIFF_DATASTORE_BLOAT_MIB (default 200) sets the free space
// and SKIFF_DATASTORE_LIVE_MIB (default 0) adds live rows kine keeps, to
// time the startup VACUUM of a large database.
func TestDatastoreShrinksOnStart(t *testing.T) {
	bloat := int64(envInt(t, "SKIFF_DATASTORE_BLOAT_MIB", 200)) << 20
	live := int64(envInt(t, "SKIFF_DATASTORE_LIVE_MIB", 0)) << 20
	s := newServerOnFreePorts(t)
	s.start()
	s.waitReady()
	s.kubectl("create", "configmap", "kept", "--from-literal=v=1")
	s.stop()
	fresh := fileSize(t, s.stateDB())

	db := openSQLite(t, s.stateDB(), "_pragma=busy_timeout(30000)")
	fill := func(table string, bytes int64) {
		t.Helper()
		if _, err := db.Exec("CREATE TABLE " + table + " (b BLOB)"); err != nil {
			t.Fatal(err)
		}
		const row = 64 << 10
		for done := int64(0); done < bytes; done += 256 * row {
			if _, err := db.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 256) INSERT INTO "+table+" SELECT randomblob(?) FROM n", row); err != nil {
				t.Fatalf("fill %s: %v", table, err)
			}
		}
	}
	fill("old_bloat", bloat)
	if live > 0 {
		// A table kine does not know stands for live rows: VACUUM copies it.
		fill("old_live", live)
	}
	if _, err := db.Exec("DROP TABLE old_bloat"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	var freePages, pageSize int64
	if err := db.QueryRow("SELECT freelist_count, page_size FROM pragma_freelist_count(), pragma_page_size()").Scan(&freePages, &pageSize); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bloated := fileSize(t, s.stateDB())
	t.Logf("fresh state.db %s; bloated to %s, of which %s free", mib(fresh), mib(bloated), mib(freePages*pageSize))
	if freePages*pageSize < bloat*9/10 {
		t.Fatalf("the test did not bloat the database: %s free", mib(freePages*pageSize))
	}

	startedAt := time.Now()
	s.start()
	s.waitReady()
	ready := time.Since(startedAt)
	shrunk := fileSize(t, s.stateDB())
	vacuum := ""
	for _, line := range strings.Split(s.log()[s.logStart:], "\n") {
		if strings.Contains(line, "VACUUM") {
			vacuum += "\n  " + line
		}
	}
	t.Logf("started and ready in %s; state.db %s, WAL %s; kine's log:%s", ready.Round(100*time.Millisecond), mib(shrunk), mib(fileSize(t, s.stateDB()+"-wal")), vacuum)
	if shrunk > bloated-bloat*9/10 {
		t.Errorf("state.db is %s after the start, was %s with %s free: the start did not reclaim the space", mib(shrunk), mib(bloated), mib(freePages*pageSize))
	}
	if got := s.kubectl("get", "configmap", "kept", "-o", "jsonpath={.data.v}"); got != "1" {
		t.Errorf("the ConfigMap stored before the bloat: %q", got)
	}
	s.stop()
	integrityCheck(t, s.stateDB())
}

// TestDatastoreSurvivesKill kills a control-plane-only server with SIGKILL
// at a random moment while clients create, update and delete ConfigMaps and
// Deployments, SKIFF_DATASTORE_KILLS times in a row (CI: 5; the
// reliability doc's form: 20). After each kill the database passes SQLite's
// integrity_check, the server comes up again, and every write the API
// acknowledged before the kill is there: created and updated objects with
// their last acknowledged value, deleted ones gone. A write whose request
// failed because of the kill may or may not have happened; its object is
// not checked. The node does not matter to the datastore, so no agent runs
// and the test needs no node lock.
func TestDatastoreSurvivesKill(t *testing.T) {
	kills := envInt(t, "SKIFF_DATASTORE_KILLS", 5)
	s := newServerOnFreePorts(t)
	s.start()
	s.waitReady()
	ns := "kill-loop"
	if _, err := s.clientset().CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	acked := newAckedWrites()
	var restarts []time.Duration
	for round := 1; round <= kills; round++ {
		cs := s.clientset()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for worker := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				writeUntilFailure(ctx, cs, ns, fmt.Sprintf("r%02d-w%d", round, worker), acked)
			}()
		}
		// Anywhere from the first writes to a few hundred of them.
		time.Sleep(time.Duration(500+rand.IntN(5500)) * time.Millisecond)
		s.kill()
		cancel()
		wg.Wait()
		integrityCheck(t, s.stateDB())

		startedAt := time.Now()
		s.start()
		s.waitReady()
		restarts = append(restarts, time.Since(startedAt))
		cms, deps := acked.check(t, s.clientset(), ns)
		t.Logf("kill %d: ready again in %s; %d ConfigMaps and %d Deployments as acknowledged", round, restarts[len(restarts)-1].Round(100*time.Millisecond), cms, deps)
	}
	slices.Sort(restarts)
	t.Logf("%d kills: every restart ready, in %s (median) to %s (max)", kills, restarts[len(restarts)/2].Round(100*time.Millisecond), restarts[len(restarts)-1].Round(100*time.Millisecond))
	s.stop()
	integrityCheck(t, s.stateDB())
}

// TestDatastoreFullDisk runs a control-plane-only server on a data dir of
// its own 64 MiB filesystem (tmpfs) and fills it up. Writes through the API
// must fail with an error that says the disk is full, what was stored
// before must stay readable, the server must not exit, and once space is
// freed, writes must succeed again without a restart. Needs root, to mount.
func TestDatastoreFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small filesystem for the data dir needs root")
	}
	s := newServerOnFreePorts(t)
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", s.dataDir, "tmpfs", 0, "size=64m,mode=0700"); err != nil {
		t.Fatalf("mount a 64 MiB tmpfs on %s: %v", s.dataDir, err)
	}
	t.Cleanup(func() {
		s.kill()
		if err := syscall.Unmount(s.dataDir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", s.dataDir, err)
		}
	})
	s.start()
	s.waitReady()
	cs := s.clientset()
	ctx := context.Background()
	cms := cs.CoreV1().ConfigMaps("default")
	value := strings.Repeat("x", 100<<10)
	var stored []string
	for i := range 20 {
		name := fmt.Sprintf("before-full-%02d", i)
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": value}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, name)
	}

	filler := filepath.Join(s.dataDir, "filler")
	fillUp(t, filler)
	var writeErr error
	for i := 0; writeErr == nil && i < 100; i++ {
		name := fmt.Sprintf("while-full-%03d", i)
		if _, writeErr = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": value}}, metav1.CreateOptions{}); writeErr == nil {
			// Acknowledged: it must be there.
			if _, err := cms.Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Fatalf("ConfigMap %s, acknowledged on a full disk, cannot be read: %v", name, err)
			}
			stored = append(stored, name)
		}
	}
	if writeErr == nil {
		t.Fatal("100 writes of 100 KiB succeeded on a full disk")
	}
	t.Logf("a write on a full disk: %v", writeErr)
	if !strings.Contains(writeErr.Error(), "disk is full") {
		t.Errorf("a write on a full disk failed with %q, which does not say the disk is full", writeErr)
	}
	// An update is refused as clearly, not retried by the apiserver as a
	// conflict until the request times out.
	cm, err := cms.Get(ctx, "before-full-01", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["v"] = strings.Repeat("y", 100<<10)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err == nil {
		stored = append(stored[:1], stored[2:]...) // changed, as acknowledged
		t.Error("an update of 100 KiB succeeded on a full disk")
	} else if !strings.Contains(err.Error(), "disk is full") {
		t.Errorf("an update on a full disk failed with %q, which does not say the disk is full", err)
	}
	// The server lives on with the disk full, and serves reads.
	for range 6 {
		time.Sleep(5 * time.Second)
		if got, err := cms.Get(ctx, "before-full-00", metav1.GetOptions{}); err != nil || got.Data["v"] != value {
			t.Fatalf("read of a ConfigMap stored before the disk filled up: %v", err)
		}
	}
	select {
	case <-s.exited:
		t.Fatalf("skiff server exited with the disk full (%v)", s.cmd.ProcessState)
	default:
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freedAt := time.Now()
	eventually(t, 2*time.Minute, func() error {
		_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-full"}, Data: map[string]string{"v": value}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil // an earlier try was stored after its request gave up
		}
		return err
	})
	stored = append(stored, "after-full")
	t.Logf("writes succeed again %s after the space was freed", time.Since(freedAt).Round(100*time.Millisecond))
	select {
	case <-s.exited:
		t.Fatalf("skiff server exited (%v)", s.cmd.ProcessState)
	default:
	}
	list, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = cm.Data["v"] == value
	}
	for _, name := range stored {
		if !have[name] {
			t.Errorf("ConfigMap %s, acknowledged before the space was freed, is lost or changed", name)
		}
	}
	s.stop()
	integrityCheck(t, s.stateDB())
}
