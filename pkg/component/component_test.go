package component

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake records its lifecycle into a shared journal.
type fake struct {
	name     string
	startErr error
	crash    chan error // send to make the component exit on its own
	journal  *journal
}

type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, s)
}

func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.entries, ",")
}

func (f *fake) Name() string { return f.name }

func (f *fake) Start(ctx context.Context) (<-chan error, error) {
	if f.startErr != nil {
		f.journal.add("fail " + f.name)
		return nil, f.startErr
	}
	f.journal.add("start " + f.name)
	done := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
			f.journal.add("stop " + f.name)
			done <- nil
		case err := <-f.crash:
			f.journal.add("crash " + f.name)
			done <- err
		}
		close(done)
	}()
	return done, nil
}

// chain makes fakes each requiring the one before it.
func chain(j *journal, names ...string) []Component {
	var out []Component
	for i, n := range names {
		var c Component = &fake{name: n, journal: j, crash: make(chan error, 1)}
		if i > 0 {
			c = Requiring(c, names[i-1])
		}
		out = append(out, c)
	}
	return out
}

// fakeOf unwraps a chain's element.
func fakeOf(c Component) *fake {
	if r, ok := c.(requiring); ok {
		return r.Component.(*fake)
	}
	return c.(*fake)
}

func TestRunStartsInOrderAndStopsInReverse(t *testing.T) {
	j := &journal{}
	ctx, cancel := context.WithCancel(context.Background())
	readyCalled := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, func() { j.add("ready"); close(readyCalled) }, chain(j, "a", "b", "c")...)
	}()
	<-readyCalled
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	want := "start a,start b,start c,ready,stop c,stop b,stop a"
	if got := j.String(); got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
}

func TestRunStopsStartedComponentsWhenOneFailsToStart(t *testing.T) {
	j := &journal{}
	comps := chain(j, "a", "b", "c")
	fakeOf(comps[1]).startErr = errors.New("port busy")
	err := Run(context.Background(), func() { t.Error("ready called despite failure") }, comps...)
	if err == nil || !strings.Contains(err.Error(), "start b: port busy") {
		t.Fatalf("err = %v, want it to name b and the cause", err)
	}
	if got, want := j.String(), "start a,fail b,stop a"; got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
}

func TestRunShutsDownWhenAComponentExits(t *testing.T) {
	j := &journal{}
	comps := chain(j, "a", "b", "c")
	errc := make(chan error, 1)
	ready := make(chan struct{})
	go func() { errc <- Run(context.Background(), func() { close(ready) }, comps...) }()
	<-ready
	fakeOf(comps[1]).crash <- errors.New("lost database")
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "b stopped unexpectedly: lost database") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a component crashed")
	}
	if got, want := j.String(), "start a,start b,start c,crash b,stop c,stop a"; got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
}

// slowStart is a component whose Start returns, successfully, only once
// the runner has cancelled it, and which then takes a while to stop.
type slowStart struct {
	entered, stopped chan struct{}
}

func (s *slowStart) Name() string { return "slow" }

func (s *slowStart) Start(ctx context.Context) (<-chan error, error) {
	close(s.entered)
	<-ctx.Done() // the runner saw the stop and cancelled the start
	done := make(chan error)
	go func() {
		<-ctx.Done()
		time.Sleep(200 * time.Millisecond) // a stop takes a while
		close(s.stopped)
		close(done)
	}()
	return done, nil
}

// A stop asked for while a component is still starting waits for that
// component too: if its Start succeeds after all, it is stopped and waited
// for before Run returns, not left running.
func TestRunWaitsForAStartPendingAtCancel(t *testing.T) {
	c := &slowStart{entered: make(chan struct{}), stopped: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan error, 1)
	go func() { returned <- Run(ctx, nil, c) }()
	<-c.entered
	cancel()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	select {
	case <-c.stopped:
	default:
		t.Fatal("Run returned while the component whose start was pending still runs")
	}
}

// gate is a component whose Start returns once released.
type gate struct {
	name    string
	release chan struct{}
	journal *journal
}

func (g *gate) Name() string { return g.name }

func (g *gate) Start(ctx context.Context) (<-chan error, error) {
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.journal.add("ready " + g.name)
	done := make(chan error)
	go func() {
		<-ctx.Done()
		g.journal.add("stop " + g.name)
		close(done)
	}()
	return done, nil
}

// Independent components start side by side: one slow to get ready holds
// back only the components that require it.
func TestRunStartsIndependentComponentsTogether(t *testing.T) {
	j := &journal{}
	slow := &gate{name: "slow", release: make(chan struct{}), journal: j}
	fast := &fake{name: "fast", journal: j, crash: make(chan error, 1)}
	after := &fake{name: "after", journal: j, crash: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, func() { close(ready) }, slow, fast, Requiring(after, "slow")) }()

	deadline := time.After(5 * time.Second)
	for j.String() != "start fast" {
		select {
		case <-deadline:
			t.Fatalf("the independent component did not start while the other was not ready: %s", j)
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(slow.release)
	<-ready
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	want := "start fast,ready slow,start after,stop after,stop slow,stop fast"
	if got := j.String(); got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
}

// A task's output reaches the component that requires it, the task is
// not stopped (it has finished), and a failing task stops what started.
func TestTasksAndOutputs(t *testing.T) {
	j := &journal{}
	var out Output[string]
	produce := Task("produce", func(context.Context) error {
		out.Set("credentials")
		return nil
	})
	consume := Requiring(Build("consume", func() (Component, error) {
		j.add("built with " + out.Get())
		return &fake{name: "consume", journal: j, crash: make(chan error, 1)}, nil
	}), "produce")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, func() { close(ready) }, produce, consume) }()
	<-ready
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got, want := j.String(), "built with credentials,start consume,stop consume"; got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}

	j = &journal{}
	other := &fake{name: "other", journal: j, crash: make(chan error, 1)}
	failing := Requiring(Task("join", func(context.Context) error { return errors.New("token refused") }), "other")
	never := Requiring(&fake{name: "never", journal: j, crash: make(chan error, 1)}, "join")
	err := Run(context.Background(), nil, other, failing, never)
	if err == nil || err.Error() != "start join: token refused" {
		t.Fatalf("err = %v", err)
	}
	if got, want := j.String(), "start other,stop other"; got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
}

func TestRunRefusesABadGraph(t *testing.T) {
	j := &journal{}
	a := &fake{name: "a", journal: j}
	b := &fake{name: "b", journal: j}
	if err := Run(context.Background(), nil, Requiring(a, "b"), b); err == nil || !strings.Contains(err.Error(), "a requires b, which is not listed before it") {
		t.Errorf("requirement listed later: %v", err)
	}
	if err := Run(context.Background(), nil, a, a); err == nil || !strings.Contains(err.Error(), "two components are named a") {
		t.Errorf("duplicate: %v", err)
	}
	if j.String() != "" {
		t.Errorf("started despite a bad graph: %s", j)
	}
}

func TestEarlyComponentIsStoppedInItsPlace(t *testing.T) {
	j := &journal{}
	comps := chain(j, "db", "api")
	db, _, err := Early(context.Background(), comps[0])
	if err != nil {
		t.Fatal(err)
	}
	j.add("set-up")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, cancel, db, comps[1]) }()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got, want := j.String(), "start db,set-up,start api,stop api,stop db"; got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
}

func TestEarlyComponentStopsWithoutTheGraph(t *testing.T) {
	j := &journal{}
	_, stop, err := Early(context.Background(), &fake{name: "db", journal: j, crash: make(chan error, 1)})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if got, want := j.String(), "start db,stop db"; got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
	if _, _, err := Early(context.Background(), chain(j, "a", "b")[1]); err == nil {
		t.Fatal("a component with requirements was started early")
	}
}
