package leader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-io/skiff/pkg/component"
)

// fast keeps the tests short. The lease is written in whole seconds, so
// it cannot be shorter than one; at two, a takeover well within it can
// only come from the old leader's release, not from expiry.
var fast = timing{lease: 2 * time.Second, renewDeadline: time.Second, retry: 100 * time.Millisecond}

// cluster is one fake apiserver that several servers' clients share. The
// fake clientset alone neither sets a resourceVersion nor refuses an
// update from a stale one, so two candidates that read the same expired
// lease would both win; the election relies on the apiserver's conflict
// there, which cluster adds for Leases.
type cluster struct {
	tracker k8stesting.ObjectTracker
	mu      sync.Mutex
	version int
}

func newCluster() *cluster {
	return &cluster{tracker: k8stesting.NewObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder())}
}

// client is one server's connection; while cut is set, its requests fail
// as if the server were cut off from the apiserver.
func (c *cluster) client(cut *atomic.Bool) func() (kubernetes.Interface, error) {
	cs := &fake.Clientset{}
	cs.AddReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		if cut != nil && cut.Load() {
			return true, nil, errors.New("connection refused (cut off by the test)")
		}
		return false, nil, nil
	})
	cs.AddReactor("create", "leases", c.createLease)
	cs.AddReactor("update", "leases", c.updateLease)
	cs.AddReactor("*", "*", k8stesting.ObjectReaction(c.tracker))
	return func() (kubernetes.Interface, error) { return cs, nil }
}

func (c *cluster) createLease(a k8stesting.Action) (bool, runtime.Object, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lease := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
	c.version++
	lease.ResourceVersion = strconv.Itoa(c.version)
	if err := c.tracker.Create(a.GetResource(), lease, a.GetNamespace()); err != nil {
		return true, nil, err
	}
	return true, lease, nil
}

func (c *cluster) updateLease(a k8stesting.Action) (bool, runtime.Object, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lease := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
	current, err := c.tracker.Get(a.GetResource(), a.GetNamespace(), lease.Name)
	if err != nil {
		return true, nil, err
	}
	if current.(*coordinationv1.Lease).ResourceVersion != lease.ResourceVersion {
		return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), lease.Name, errors.New("the object has been modified"))
	}
	c.version++
	lease.ResourceVersion = strconv.Itoa(c.version)
	if err := c.tracker.Update(a.GetResource(), lease, a.GetNamespace()); err != nil {
		return true, nil, err
	}
	return true, lease, nil
}

func (c *cluster) holder(t *testing.T, name string) string {
	t.Helper()
	obj, err := c.tracker.Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), leaseNamespace, "skiff-"+name)
	if err != nil {
		t.Fatalf("get lease: %v", err)
	}
	if h := obj.(*coordinationv1.Lease).Spec.HolderIdentity; h != nil {
		return *h
	}
	return ""
}

// tally counts, across servers, the copies of a controller that run, and
// the most that ever ran at once.
type tally struct {
	mu           sync.Mutex
	running, max int
}

func (t *tally) add(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.running += n
	t.max = max(t.max, t.running)
}

func (t *tally) most() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.max
}

// counting is one server's copy of a controller.
type counting struct {
	name    string
	tally   *tally
	starts  atomic.Int32
	running atomic.Bool
	// startErr fails its start; exit, when sent to, ends it on its own.
	startErr error
	exit     chan error
}

func newCounting(name string, t *tally) *counting {
	return &counting{name: name, tally: t, exit: make(chan error, 1)}
}

func (c *counting) Name() string { return c.name }

func (c *counting) Start(ctx context.Context) (<-chan error, error) {
	c.starts.Add(1)
	if c.startErr != nil {
		return nil, c.startErr
	}
	c.tally.add(1)
	c.running.Store(true)
	done := make(chan error, 1)
	go func() {
		var err error
		select {
		case <-ctx.Done():
		case err = <-c.exit:
		}
		c.running.Store(false)
		c.tally.add(-1)
		done <- err
		close(done)
	}()
	return done, nil
}

// start runs an elected c as the runner would, with the fast durations.
func start(t *testing.T, c component.Component, client func() (kubernetes.Interface, error), identity string) (context.CancelFunc, <-chan error) {
	t.Helper()
	w := Elected(c, client, identity)
	w.(*elected).timing = fast
	ctx, cancel := context.WithCancel(context.Background())
	began := time.Now()
	done, err := w.Start(ctx)
	if err != nil {
		cancel()
		t.Fatalf("start %s: %v", identity, err)
	}
	if took := time.Since(began); took > 100*time.Millisecond {
		t.Errorf("start of %s waited %s: it must not wait for leadership", identity, took)
	}
	if done == nil {
		cancel()
		t.Fatalf("start %s: no done channel", identity)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s did not stop", identity)
		}
	})
	return cancel, done
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClusterRefusesStaleLeaseUpdates(t *testing.T) {
	cs, _ := newCluster().client(nil)()
	leases := cs.CoordinationV1().Leases(leaseNamespace)
	ctx := context.Background()
	created, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leases.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update from the current version: %v", err)
	}
	if _, err := leases.Update(ctx, created, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update from a stale version: got %v, want a conflict", err)
	}
}

func TestOneServerRunsItAndAnotherTakesOverOnStop(t *testing.T) {
	cl := newCluster()
	var ran tally
	type server struct {
		id   string
		c    *counting
		stop context.CancelFunc
		done <-chan error
	}
	// Three, so that two followers race for the released lease.
	servers := make([]*server, 3)
	for i := range servers {
		s := &server{id: fmt.Sprintf("server-%d_1", i), c: newCounting("deploy", &ran)}
		s.stop, s.done = start(t, s.c, cl.client(nil), s.id)
		servers[i] = s
	}
	leader := func() *server {
		for _, s := range servers {
			if s.c.running.Load() {
				return s
			}
		}
		return nil
	}
	starts := func() (n int32) {
		for _, s := range servers {
			n += s.c.starts.Load()
		}
		return n
	}

	waitFor(t, 2*time.Second, "one server runs deploy", func() bool { return leader() != nil })
	// Several retry periods for another to (wrongly) start as well.
	time.Sleep(5 * fast.retry)
	if n := starts(); n != 1 {
		t.Fatalf("deploy started %d times, want once", n)
	}
	old := leader()

	old.stop()
	select {
	case err := <-old.done:
		if err != nil {
			t.Fatalf("leader stopped with %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("leader did not stop")
	}
	// Well within the lease's two seconds: the leader released it.
	waitFor(t, 5*fast.retry+500*time.Millisecond, "another server takes over", func() bool { return leader() != nil })
	time.Sleep(5 * fast.retry)
	if n := starts(); n != 2 {
		t.Errorf("deploy started %d times in all, want twice", n)
	}
	if m := ran.most(); m != 1 {
		t.Errorf("%d copies of deploy ran at once", m)
	}
	if now := leader(); now == nil {
		t.Error("nobody runs deploy after the takeover")
	} else if h := cl.holder(t, "deploy"); h != now.id {
		t.Errorf("lease held by %q, want %q", h, now.id)
	}
}

func TestCutOffLeaderStopsBeforeAnotherStarts(t *testing.T) {
	cl := newCluster()
	var ran tally
	var cut atomic.Bool
	a, b := newCounting("node-hosts", &ran), newCounting("node-hosts", &ran)
	_, doneA := start(t, a, cl.client(&cut), "server-a_1")
	waitFor(t, 2*time.Second, "a leads", a.running.Load)
	start(t, b, cl.client(nil), "server-b_1")

	cut.Store(true)
	// a stops once it cannot renew for the renew deadline; b starts once
	// the lease has gone unrenewed for its duration, which is longer.
	waitFor(t, fast.renewDeadline+time.Second, "a stops", func() bool { return !a.running.Load() })
	waitFor(t, fast.lease+time.Second, "b takes over", b.running.Load)
	if m := ran.most(); m != 1 {
		t.Errorf("%d copies ran at once", m)
	}
	select {
	case err := <-doneA:
		t.Fatalf("a's wrapper ended (%v) on a lost lease; it must contend again", err)
	default:
	}
	if h := cl.holder(t, "node-hosts"); h != "server-b_1" {
		t.Errorf("lease held by %q, want server-b_1", h)
	}

	// Back in touch, a waits as a follower.
	cut.Store(false)
	time.Sleep(5 * fast.retry)
	if a.running.Load() || a.starts.Load() != 1 {
		t.Errorf("a runs again (started %d times) while b leads", a.starts.Load())
	}
}

func TestFailureWhileLeadingEndsTheWrapper(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		set  func(*counting)
	}{
		{"start fails", func(c *counting) { c.startErr = boom }},
		{"exits with an error", func(c *counting) { c.exit <- boom }},
		{"exits without one", func(c *counting) { close(c.exit) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster()
			c := newCounting("deploy", &tally{})
			tc.set(c)
			_, done := start(t, c, cl.client(nil), "server-a_1")
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("wrapper reported nil, want the failure")
				}
				if tc.name != "exits without one" && !errors.Is(err, boom) {
					t.Fatalf("got %v, want %v", err, boom)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("the failure did not reach the wrapper's done channel")
			}
			// Released, so that another server takes over at once.
			if h := cl.holder(t, "deploy"); h != "" {
				t.Errorf("lease still held by %q", h)
			}
			if n := c.starts.Load(); n != 1 {
				t.Errorf("started %d times", n)
			}
		})
	}
}

func TestFinishedTaskKeepsTheLease(t *testing.T) {
	cl := newCluster()
	var runs atomic.Int32
	task := component.Task("migrate", func(context.Context) error { runs.Add(1); return nil })
	_, done := start(t, task, cl.client(nil), "server-a_1")
	waitFor(t, 2*time.Second, "the task runs", func() bool { return runs.Load() > 0 })
	time.Sleep(5 * fast.retry)
	if n := runs.Load(); n != 1 {
		t.Errorf("task ran %d times, want once", n)
	}
	if h := cl.holder(t, "migrate"); h != "server-a_1" {
		t.Errorf("lease held by %q, want server-a_1", h)
	}
	select {
	case err := <-done:
		t.Fatalf("wrapper ended with %v while leading a finished task", err)
	default:
	}
}

func TestKeepsNameAndRequirements(t *testing.T) {
	c := component.Requiring(newCounting("deploy", &tally{}), "apiserver", "cluster-roles")
	w := Elected(c, newCluster().client(nil), "server-a_1")
	if w.Name() != "deploy" {
		t.Errorf("name %q", w.Name())
	}
	if got, want := component.Requires(w), []string{"apiserver", "cluster-roles"}; !slices.Equal(got, want) {
		t.Errorf("requires %q, want %q", got, want)
	}
	if got := component.Requires(Elected(newCounting("plain", &tally{}), nil, "x")); len(got) != 0 {
		t.Errorf("a component without requirements gained %q", got)
	}
	api, roles := component.Task("apiserver", nil), component.Task("cluster-roles", nil)
	if err := component.Check(api, roles, w); err != nil {
		t.Errorf("graph with the wrapper: %v", err)
	}
	if err := component.Check(api, w, roles); err == nil {
		t.Error("graph with the wrapper before what it requires passed")
	}
}
