package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"
	_ "modernc.org/sqlite" // the SQLite driver skiff's kine is built with

	"github.com/skiff-io/skiff/pkg/kubeclient"
	"github.com/skiff-io/skiff/pkg/layout"
)

// newServerOnFreePorts prepares a control-plane-only server whose
// controller-manager and scheduler also listen on free ports, so that it
// can run beside a node (which owns 10257 and 10259) without the node lock.
func newServerOnFreePorts(t *testing.T) *server {
	t.Helper()
	return newServer(t,
		fmt.Sprintf("--kube-controller-manager-arg=secure-port=%d", freePort(t)),
		fmt.Sprintf("--kube-scheduler-arg=secure-port=%d", freePort(t)))
}

// stateDB is the server's SQLite database; its write-ahead log is
// stateDB()+"-wal".
func (s *server) stateDB() string { return layout.New(s.dataDir).Server.StateDB }

// clientset is a client-go client of the server without client-side
// throttling, so a churn measures the server.
func (s *server) clientset() *kubernetes.Clientset {
	s.t.Helper()
	cfg, err := kubeclient.Config(s.kubeconfig)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	cfg.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		s.t.Fatalf("client for %s: %v", cfg.Host, err)
	}
	return cs
}

// fileSize is the size of path, 0 if it does not exist.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// statSize is the size of path, 0 if it cannot be read (the WAL comes and
// goes); unlike fileSize it may run outside the test's goroutine.
func statSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// dbSizeSampler records the sizes of the database file and its WAL once a
// second while a workload runs.
type dbSizeSampler struct {
	db   string
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples []dbSizeSample
}

type dbSizeSample struct {
	at      time.Duration
	db, wal int64
}

func sampleDBSizes(t *testing.T, db string) *dbSizeSampler {
	s := &dbSizeSampler{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last := time.Now()
		for {
			sample := dbSizeSample{at: time.Since(start), db: statSize(db), wal: statSize(db + "-wal")}
			s.mu.Lock()
			s.samples = append(s.samples, sample)
			s.mu.Unlock()
			if time.Since(last) >= 30*time.Second {
				t.Logf("after %s: state.db %s, WAL %s", sample.at.Round(time.Second), mib(sample.db), mib(sample.wal))
				last = time.Now()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// finish stops sampling and returns the samples.
func (s *dbSizeSampler) finish() []dbSizeSample {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// peaks are the largest database and WAL sizes among samples taken from
// from on.
func peaks(samples []dbSizeSample, from time.Duration) (db, wal int64) {
	for _, s := range samples {
		if s.at < from {
			continue
		}
		db, wal = max(db, s.db), max(wal, s.wal)
	}
	return db, wal
}

// dbSizeAt is the database size of the first sample taken at or after at.
func dbSizeAt(samples []dbSizeSample, at time.Duration) int64 {
	for _, s := range samples {
		if s.at >= at {
			return s.db
		}
	}
	return 0
}

// churnConfigMaps creates, updates and deletes total ConfigMaps of
// valueBytes in ns, paced over duration by workers clients. ConfigMap i is deleted once
// ConfigMap i+live exists, so about live of them exist at any time, and
// none once it returns.
func churnConfigMaps(ctx context.Context, cs kubernetes.Interface, ns string, total, live, workers int, duration time.Duration, valueBytes int) error {
	cms := cs.CoreV1().ConfigMaps(ns)
	value := strings.Repeat("x", valueBytes)
	prefix := fmt.Sprintf("churn-%d-", time.Now().UnixNano())
	name := func(i int) string { return fmt.Sprintf("%s%06d", prefix, i) }
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total+live {
					return
				}
				if i < total {
					// Pace: object i starts no earlier than its share of the duration.
					if wait := time.Until(start.Add(duration * time.Duration(i) / time.Duration(total))); wait > 0 {
						select {
						case <-ctx.Done():
							errs <- ctx.Err()
							return
						case <-time.After(wait):
						}
					}
					cm, err := cms.Create(ctx, &corev1.ConfigMap{
						ObjectMeta: metav1.ObjectMeta{Name: name(i)},
						Data:       map[string]string{"v": value, "rev": "1"},
					}, metav1.CreateOptions{})
					if err != nil {
						errs <- fmt.Errorf("create %s: %w", name(i), err)
						return
					}
					cm.Data["rev"] = "2"
					if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
						errs <- fmt.Errorf("update %s: %w", name(i), err)
						return
					}
				}
				if old := i - live; old >= 0 {
					if err := cms.Delete(ctx, name(old), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
						errs <- fmt.Errorf("delete %s: %w", name(old), err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// envInt is the integer in the environment variable name, or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number, 0 or more", name, v)
	}
	return n
}

// envDuration is the duration in the environment variable name, or def.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q: want a duration such as 20m", name, v)
	}
	return d
}

// openSQLite opens path with the SQLite driver skiff's kine uses.
func openSQLite(t *testing.T, path, query string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: path, RawQuery: query}).String())
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return db
}

// integrityCheck runs PRAGMA integrity_check on the stopped server's
// database, read-only, and fails the test unless SQLite answers "ok".
func integrityCheck(t *testing.T, path string) {
	t.Helper()
	db := openSQLite(t, path, "mode=ro")
	defer db.Close()
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatalf("integrity_check of %s: %v", path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatalf("integrity_check of %s: %v", path, err)
		}
		problems = append(problems, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("integrity_check of %s: %v", path, err)
	}
	if len(problems) != 1 || problems[0] != "ok" {
		t.Fatalf("integrity_check of %s: %s", path, strings.Join(problems, "; "))
	}
}

// ackedWrites is what the API acknowledged for each object: its last
// acknowledged value, or deleted. Objects whose last request failed are
// uncertain and left out.
type ackedWrites struct {
	mu          sync.Mutex
	configMaps  map[string]string // name: data["rev"], "" once deleted
	deployments map[string]bool   // name: exists
}

func newAckedWrites() *ackedWrites {
	return &ackedWrites{configMaps: map[string]string{}, deployments: map[string]bool{}}
}

func (a *ackedWrites) configMap(name, rev string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.configMaps[name] = rev
}

func (a *ackedWrites) deployment(name string, exists bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deployments[name] = exists
}

// uncertain forgets an object whose request failed.
func (a *ackedWrites) uncertain(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.configMaps, name)
	delete(a.deployments, name)
}

// check fails the test unless the server holds exactly what was
// acknowledged, and returns how many objects it compared.
func (a *ackedWrites) check(t *testing.T, cs kubernetes.Interface, ns string) (configMaps, deployments int) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx := context.Background()
	cmList, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list ConfigMaps: %v", err)
	}
	haveCM := map[string]string{}
	for _, cm := range cmList.Items {
		haveCM[cm.Name] = cm.Data["rev"]
	}
	for name, rev := range a.configMaps {
		got, ok := haveCM[name]
		switch {
		case rev == "" && ok:
			t.Errorf("ConfigMap %s was deleted (acknowledged) but is back", name)
		case rev != "" && !ok:
			t.Errorf("ConfigMap %s (rev %s acknowledged) is lost", name, rev)
		case rev != "" && got != rev:
			t.Errorf("ConfigMap %s has rev %s, the last acknowledged update set %s", name, got, rev)
		}
	}
	depList, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list Deployments: %v", err)
	}
	haveDep := map[string]bool{}
	for _, d := range depList.Items {
		haveDep[d.Name] = true
	}
	for name, exists := range a.deployments {
		if exists != haveDep[name] {
			t.Errorf("Deployment %s: exists=%v, acknowledged exists=%v", name, haveDep[name], exists)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return len(a.configMaps), len(a.deployments)
}

// writeUntilFailure creates, updates and deletes ConfigMaps and Deployments
// named after prefix, one request at a time, recording each acknowledged
// write, until a request fails (the server was killed) or ctx ends.
func writeUntilFailure(ctx context.Context, cs kubernetes.Interface, ns, prefix string, acked *ackedWrites) {
	cms := cs.CoreV1().ConfigMaps(ns)
	deps := cs.AppsV1().Deployments(ns)
	replicas := int32(1)
	previousDep := ""
	for i := 0; ctx.Err() == nil; i++ {
		cmName := fmt.Sprintf("cm-%s-%05d", prefix, i)
		cm, err := cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: cmName},
			Data:       map[string]string{"rev": "1"},
		}, metav1.CreateOptions{})
		if err != nil {
			acked.uncertain(cmName)
			return
		}
		acked.configMap(cmName, "1")
		cm.Data["rev"] = "2"
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			acked.uncertain(cmName)
			return
		}
		acked.configMap(cmName, "2")
		if i%3 == 0 {
			if err := cms.Delete(ctx, cmName, metav1.DeleteOptions{}); err != nil {
				acked.uncertain(cmName)
				return
			}
			acked.configMap(cmName, "")
		}
		if i%5 != 0 {
			continue
		}
		depName := fmt.Sprintf("dep-%s-%05d", prefix, i)
		labels := map[string]string{"app": depName}
		_, err = deps.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: depName},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/never-pulled"}}},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			acked.uncertain(depName)
			return
		}
		acked.deployment(depName, true)
		if previousDep != "" {
			if err := deps.Delete(ctx, previousDep, metav1.DeleteOptions{}); err != nil {
				acked.uncertain(previousDep)
				return
			}
			acked.deployment(previousDep, false)
		}
		previousDep = depName
	}
}

// fillUp writes path until its filesystem has no space left.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}
