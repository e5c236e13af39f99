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

func fakes(j *journal, names ...string) []Component {
	var out []Component
	for _, n := range names {
		out = append(out, &fake{name: n, journal: j, crash: make(chan error, 1)})
	}
	return out
}

func TestRunStartsInOrderAndStopsInReverse(t *testing.T) {
	j := &journal{}
	ctx, cancel := context.WithCancel(context.Background())
	readyCalled := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, func() { j.add("ready"); close(readyCalled) }, fakes(j, "a", "b", "c")...)
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
	comps := fakes(j, "a", "b", "c")
	comps[1].(*fake).startErr = errors.New("port busy")
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
	comps := fakes(j, "a", "b", "c")
	errc := make(chan error, 1)
	ready := make(chan struct{})
	go func() { errc <- Run(context.Background(), func() { close(ready) }, comps...) }()
	<-ready
	comps[1].(*fake).crash <- errors.New("lost database")
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

// slowStart is a component whose Start returns only after it is told to,
// whatever its context says, and which then runs until cancelled.
type slowStart struct {
	entered, release, stopped chan struct{}
}

func (s *slowStart) Name() string { return "slow" }

func (s *slowStart) Start(ctx context.Context) (<-chan error, error) {
	close(s.entered)
	<-s.release
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
	c := &slowStart{entered: make(chan struct{}), release: make(chan struct{}), stopped: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan error, 1)
	go func() { returned <- Run(ctx, nil, c) }()
	<-c.entered
	cancel()
	time.Sleep(50 * time.Millisecond) // let Run see the cancel first
	close(c.release)
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
