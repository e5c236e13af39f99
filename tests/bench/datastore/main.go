// Command datastore measures the datastore as a client sees it: latency and
// throughput of ConfigMap create, update, delete and list through the
// apiserver, how long a write takes to arrive on a watch, and the size of
// the database at each stage. scripts/bench datastore starts the server,
// runs this program against its admin kubeconfig and adds the compaction
// measurements, which need server restarts.
//
// It links only client-go, not k8s.io/kubernetes, so that it builds in
// seconds.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"
)

type options struct {
	kubeconfig    string
	count         int
	concurrency   int
	valueBytes    int
	serialOps     int
	listRepeats   int
	listPageSize  int
	watchWrites   int
	dbSizeCommand string
	out           string
	timeout       time.Duration
}

// Phase is one measured operation type: wall time, throughput and the
// distribution of per-request latencies. Seconds and OpsPerS are left out
// for samples that are not one timed sequence of requests (the lists, the
// watch events during the creates).
type Phase struct {
	Ops         int     `json:"ops"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds,omitempty"`
	OpsPerS     float64 `json:"ops_per_s,omitempty"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
}

// Result is the program's JSON output.
type Result struct {
	Count         int    `json:"count"`
	Concurrency   int    `json:"concurrency"`
	ValueBytes    int    `json:"value_bytes"`
	SerialOps     int    `json:"serial_ops"`
	ListRepeats   int    `json:"list_repeats"`
	ListPageSize  int    `json:"list_page_size"`
	WatchWrites   int    `json:"watch_writes"`
	ServerVersion string `json:"server_version"`
	// Phases by name: create, update, delete (concurrent); list_all,
	// list_paged; serial_create, serial_get, serial_update, serial_delete
	// (one client); watch_serial (one write at a time, each waited for on
	// the watch) and watch_during_create (every create's ADDED event).
	Phases map[string]*Phase `json:"phases"`
	// DBBytes by stage: empty, after_create, after_update, after_delete;
	// null when no --db-size-command was given.
	DBBytes map[string]*int64 `json:"db_bytes"`
	// RevisionAfterDelete is the datastore revision once everything this
	// program made is gone; compaction up to it removes all their rows.
	RevisionAfterDelete int64   `json:"revision_after_delete"`
	Seconds             float64 `json:"seconds"`
}

func main() {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "admin kubeconfig of the server to measure (required)")
	flag.IntVar(&o.count, "count", 1000, "ConfigMaps to create, update, list and delete")
	flag.IntVar(&o.concurrency, "concurrency", 8, "concurrent clients for create, update and delete")
	flag.IntVar(&o.valueBytes, "value-bytes", 1024, "bytes of data in each ConfigMap")
	flag.IntVar(&o.serialOps, "serial-ops", 200, "ConfigMaps created, read, updated and deleted by one client, one request at a time")
	flag.IntVar(&o.listRepeats, "list-repeats", 5, "times to list all ConfigMaps, in one request and in pages")
	flag.IntVar(&o.listPageSize, "list-page-size", 500, "page size of the paged list (kubectl's default chunk size)")
	flag.IntVar(&o.watchWrites, "watch-writes", 200, "writes whose watch delivery is timed one at a time")
	flag.StringVar(&o.dbSizeCommand, "db-size-command", "", "shell command printing the database size in bytes, run at each stage")
	flag.StringVar(&o.out, "out", "", "JSON output file (default: standard output)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	if o.kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "datastore: --kubeconfig is required: the admin kubeconfig of the server to measure")
		os.Exit(2)
	}
	if o.count < 1 || o.concurrency < 1 || o.listRepeats < 1 || o.listPageSize < 1 || o.serialOps < 0 || o.watchWrites < 0 {
		fmt.Fprintln(os.Stderr, "datastore: --count, --concurrency, --list-repeats and --list-page-size must be at least 1, --serial-ops and --watch-writes at least 0")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	res, err := run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "datastore: %v\n", err)
		os.Exit(1)
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		fmt.Fprintf(os.Stderr, "datastore: encode result: %v\n", err)
		os.Exit(1)
	}
	data = append(data, '\n')
	if o.out == "" {
		_, err = os.Stdout.Write(data)
	} else {
		err = os.WriteFile(o.out, data, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "datastore: write result: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[datastore %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) (*Result, error) {
	start := time.Now()
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", o.kubeconfig, err)
	}
	// The defaults (5 QPS) would measure client-side throttling; protobuf
	// is what the controllers use.
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.Timeout = time.Minute
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	version, err := client.Discovery().ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("ask %s for its version: %w", cfg.Host, err)
	}

	res := &Result{
		Count: o.count, Concurrency: o.concurrency, ValueBytes: o.valueBytes, SerialOps: o.serialOps,
		ListRepeats: o.listRepeats, ListPageSize: o.listPageSize, WatchWrites: o.watchWrites,
		ServerVersion: version.GitVersion,
		Phases:        map[string]*Phase{},
		DBBytes:       map[string]*int64{},
	}
	if err := recordDBSize(ctx, o, res, "empty"); err != nil {
		return nil, err
	}

	ns := fmt.Sprintf("bench-datastore-%d", time.Now().UnixNano())
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	cms := client.CoreV1().ConfigMaps(ns)
	names := make([]string, o.count)
	for i := range names {
		names[i] = fmt.Sprintf("cm-%06d", i)
	}

	created, err := measureCreates(ctx, o, cms, names, res)
	if err != nil {
		return nil, err
	}
	if err := recordDBSize(ctx, o, res, "after_create"); err != nil {
		return nil, err
	}

	if err := measureLists(ctx, o, cms, res); err != nil {
		return nil, err
	}

	logf("update %d ConfigMaps, %d clients", o.count, o.concurrency)
	res.Phases["update"], err = measure(ctx, o.count, o.concurrency, func(ctx context.Context, i int) error {
		cm := created[i].DeepCopy()
		cm.Data = configMapData(o.valueBytes)
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update %s: %w", names[i], err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := recordDBSize(ctx, o, res, "after_update"); err != nil {
		return nil, err
	}

	if o.serialOps > 0 {
		if err := measureSerial(ctx, o, cms, res); err != nil {
			return nil, err
		}
	}
	if o.watchWrites > 0 {
		if err := measureWatchSerial(ctx, o, cms, res); err != nil {
			return nil, err
		}
	}

	logf("delete %d ConfigMaps, %d clients", o.count, o.concurrency)
	res.Phases["delete"], err = measure(ctx, o.count, o.concurrency, func(ctx context.Context, i int) error {
		if err := cms.Delete(ctx, names[i], metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete %s: %w", names[i], err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	if err := deleteNamespace(ctx, client, ns); err != nil {
		return nil, err
	}
	// A quorum list's resourceVersion is the datastore's current revision.
	list, err := client.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("read the current revision: %w", err)
	}
	if res.RevisionAfterDelete, err = strconv.ParseInt(list.ResourceVersion, 10, 64); err != nil {
		return nil, fmt.Errorf("resourceVersion %q of a list is not a revision: %w", list.ResourceVersion, err)
	}
	if err := recordDBSize(ctx, o, res, "after_delete"); err != nil {
		return nil, err
	}
	res.Seconds = round3(time.Since(start).Seconds())
	return res, nil
}

// measureCreates creates the ConfigMaps concurrently while a watch on the
// namespace times each one's ADDED event from the moment its create was
// sent. It returns the created objects, whose resourceVersions the updates
// need.
func measureCreates(ctx context.Context, o options, cms typedcorev1.ConfigMapInterface, names []string, res *Result) ([]*corev1.ConfigMap, error) {
	w, err := cms.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("watch the benchmark namespace: %w", err)
	}
	defer w.Stop()
	arrived := make(map[string]time.Time, len(names))
	wanted := make(map[string]bool, len(names))
	for _, n := range names {
		wanted[n] = true
	}
	watchDone := make(chan error, 1)
	go func() {
		for len(arrived) < len(names) {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					watchDone <- fmt.Errorf("the watch closed after %d of %d ADDED events", len(arrived), len(names))
					return
				}
				if ev.Type == watch.Error {
					watchDone <- fmt.Errorf("watch error: %v", apierrors.FromObject(ev.Object))
					return
				}
				// The namespace also gets the controller-manager's kube-root-ca.crt.
				if cm, ok := ev.Object.(*corev1.ConfigMap); ok && ev.Type == watch.Added && wanted[cm.Name] {
					arrived[cm.Name] = time.Now()
				}
			case <-ctx.Done():
				watchDone <- fmt.Errorf("waiting for ADDED events (%d of %d): %w", len(arrived), len(names), ctx.Err())
				return
			}
		}
		watchDone <- nil
	}()

	sent := make([]time.Time, len(names))
	created := make([]*corev1.ConfigMap, len(names))
	logf("create %d ConfigMaps, %d clients", len(names), o.concurrency)
	res.Phases["create"], err = measure(ctx, len(names), o.concurrency, func(ctx context.Context, i int) error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: names[i]}, Data: configMapData(o.valueBytes)}
		sent[i] = time.Now()
		var err error
		if created[i], err = cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s: %w", names[i], err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := <-watchDone; err != nil {
		return nil, err
	}
	lat := make([]time.Duration, len(names))
	for i, n := range names {
		lat[i] = arrived[n].Sub(sent[i])
	}
	res.Phases["watch_during_create"] = summarize(lat, o.concurrency, 0)
	return created, nil
}

// measureLists lists every ConfigMap of the namespace in one request and
// in pages, each from the datastore (a consistent read, as a client with no
// resourceVersion gets).
func measureLists(ctx context.Context, o options, cms typedcorev1.ConfigMapInterface, res *Result) error {
	logf("list %d ConfigMaps %d times, in one request and in pages of %d", o.count, o.listRepeats, o.listPageSize)
	all := make([]time.Duration, 0, o.listRepeats)
	paged := make([]time.Duration, 0, o.listRepeats)
	for r := 0; r < o.listRepeats; r++ {
		t0 := time.Now()
		list, err := cms.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list ConfigMaps: %w", err)
		}
		all = append(all, time.Since(t0))
		// At least: the namespace also holds kube-root-ca.crt.
		if len(list.Items) < o.count {
			return fmt.Errorf("listed %d ConfigMaps, want at least %d", len(list.Items), o.count)
		}

		t0 = time.Now()
		n, cont := 0, ""
		for {
			page, err := cms.List(ctx, metav1.ListOptions{Limit: int64(o.listPageSize), Continue: cont})
			if err != nil {
				return fmt.Errorf("list ConfigMaps in pages: %w", err)
			}
			n += len(page.Items)
			if cont = page.Continue; cont == "" {
				break
			}
		}
		paged = append(paged, time.Since(t0))
		if n < o.count {
			return fmt.Errorf("listed %d ConfigMaps in pages, want at least %d", n, o.count)
		}
	}
	res.Phases["list_all"] = summarize(all, 1, 0)
	res.Phases["list_paged"] = summarize(paged, 1, 0)
	return nil
}

// measureSerial times single requests with nothing else in flight.
func measureSerial(ctx context.Context, o options, cms typedcorev1.ConfigMapInterface, res *Result) error {
	logf("%d serial creates, gets, updates and deletes", o.serialOps)
	name := func(i int) string { return fmt.Sprintf("serial-%06d", i) }
	objs := make([]*corev1.ConfigMap, o.serialOps)
	steps := []struct {
		phase string
		op    func(ctx context.Context, i int) error
	}{
		{"serial_create", func(ctx context.Context, i int) (err error) {
			objs[i], err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name(i)}, Data: configMapData(o.valueBytes)}, metav1.CreateOptions{})
			return err
		}},
		{"serial_get", func(ctx context.Context, i int) error {
			_, err := cms.Get(ctx, name(i), metav1.GetOptions{})
			return err
		}},
		{"serial_update", func(ctx context.Context, i int) (err error) {
			objs[i].Data = configMapData(o.valueBytes)
			objs[i], err = cms.Update(ctx, objs[i], metav1.UpdateOptions{})
			return err
		}},
		{"serial_delete", func(ctx context.Context, i int) error {
			return cms.Delete(ctx, name(i), metav1.DeleteOptions{})
		}},
	}
	for _, s := range steps {
		p, err := measure(ctx, o.serialOps, 1, s.op)
		if err != nil {
			return fmt.Errorf("%s: %w", s.phase, err)
		}
		res.Phases[s.phase] = p
	}
	return nil
}

// measureWatchSerial updates one ConfigMap again and again, each time
// waiting for the watch to deliver the update before the next, and times
// from sending the write to receiving its event (which can arrive before
// the write's response).
func measureWatchSerial(ctx context.Context, o options, cms typedcorev1.ConfigMapInterface, res *Result) error {
	logf("%d writes timed to their watch event", o.watchWrites)
	const probe = "watch-probe"
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: probe}, Data: configMapData(o.valueBytes)}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create %s: %w", probe, err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", probe).String(),
		ResourceVersion: cm.ResourceVersion,
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", probe, err)
	}
	defer w.Stop()

	type arrival struct {
		rv string
		at time.Time
	}
	arrivals := make(chan arrival, 16)
	go func() {
		defer close(arrivals)
		for ev := range w.ResultChan() {
			if m, ok := ev.Object.(*corev1.ConfigMap); ok && ev.Type == watch.Modified {
				arrivals <- arrival{m.ResourceVersion, time.Now()}
			}
		}
	}()

	lat := make([]time.Duration, 0, o.watchWrites)
	t0 := time.Now()
	for i := 0; i < o.watchWrites; i++ {
		cm.Data = configMapData(o.valueBytes)
		sent := time.Now()
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update %s: %w", probe, err)
		}
		deadline := time.NewTimer(30 * time.Second)
		for got := false; !got; {
			select {
			case a, ok := <-arrivals:
				if !ok {
					deadline.Stop()
					return fmt.Errorf("the watch of %s closed after %d of %d events", probe, i, o.watchWrites)
				}
				if a.rv == cm.ResourceVersion {
					lat = append(lat, a.at.Sub(sent))
					got = true
				}
			case <-deadline.C:
				return fmt.Errorf("no watch event for write %d of %s (resourceVersion %s) within 30s", i+1, probe, cm.ResourceVersion)
			case <-ctx.Done():
				deadline.Stop()
				return ctx.Err()
			}
		}
		deadline.Stop()
	}
	res.Phases["watch_serial"] = summarize(lat, 1, time.Since(t0))
	if err := cms.Delete(ctx, probe, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", probe, err)
	}
	return nil
}

// deleteNamespace deletes the namespace and waits until the namespace
// controller has removed it, so the database holds none of its objects.
func deleteNamespace(ctx context.Context, client kubernetes.Interface, ns string) error {
	if err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("wait for namespace %s to go: %w", ns, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s still exists 2 minutes after its deletion", ns)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func recordDBSize(ctx context.Context, o options, res *Result, stage string) error {
	if o.dbSizeCommand == "" {
		res.DBBytes[stage] = nil
		return nil
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", o.dbSizeCommand).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("database size %s: %q: %w: %s", stage, o.dbSizeCommand, err, strings.TrimSpace(string(exit.Stderr)))
		}
		return fmt.Errorf("database size %s: %q: %w", stage, o.dbSizeCommand, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return fmt.Errorf("database size %s: %q printed %q, not a byte count", stage, o.dbSizeCommand, strings.TrimSpace(string(out)))
	}
	res.DBBytes[stage] = &n
	logf("database %s: %d bytes", stage, n)
	return nil
}

// configMapData is one key holding n bytes of random hex, so that no two
// writes carry the same value.
func configMapData(n int) map[string]string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return map[string]string{"value": hex.EncodeToString(b)[:n]}
}

// measure runs op for i in [0, n) on the given number of concurrent
// workers, timing each call; the first error stops the phase.
func measure(ctx context.Context, n, workers int, op func(ctx context.Context, i int) error) (*Phase, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lat := make([]time.Duration, n)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	t0 := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s := time.Now()
				if err := op(ctx, i); err != nil {
					fail(err)
					continue
				}
				lat[i] = time.Since(s)
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return summarize(lat, workers, time.Since(t0)), nil
}

// summarize gives percentiles by nearest rank; wall is the phase's
// duration, or 0 when the samples are not one timed sequence (then the
// throughput is left out).
func summarize(lat []time.Duration, concurrency int, wall time.Duration) *Phase {
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	pct := func(p float64) float64 {
		if len(s) == 0 {
			return 0
		}
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return ms(s[i])
	}
	p := &Phase{Ops: len(s), Concurrency: concurrency, P50Ms: pct(0.50), P90Ms: pct(0.90), P99Ms: pct(0.99), MaxMs: pct(1)}
	if wall > 0 {
		p.Seconds = round3(wall.Seconds())
		p.OpsPerS = math.Round(float64(len(s))/wall.Seconds()*10) / 10
	}
	return p
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
