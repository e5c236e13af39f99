// Package component runs skiff's pieces as one graph: each starts once the
// pieces it requires are ready, independent ones start side by side, they
// stop in the reverse order they became ready, and any unexpected exit
// turns into a clean shutdown. A few upstream goroutines outlive their
// component's stop (the kubelet's, kube-proxy's run loop); they end with
// the process, which exits once Run returns (docs/architecture.md,
// Restarts and failures).
package component

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Component is one piece of skiff (datastore, apiserver, kubelet, ...).
type Component interface {
	Name() string
	// Start returns once the component is ready: serving, or, for one-shot
	// work, done. A long-running component keeps running until ctx is
	// cancelled; its channel receives its exit error (nil on a requested
	// stop) and is then closed. One-shot work returns a nil channel: it
	// has nothing left to stop.
	Start(ctx context.Context) (<-chan error, error)
}

// Dependent is a component that starts only once the components it names
// are ready; a component that is not Dependent starts at once.
type Dependent interface {
	Requires() []string
}

// Requiring declares that c starts only once the named components are
// ready.
func Requiring(c Component, names ...string) Component {
	return requiring{Component: c, requires: names}
}

type requiring struct {
	Component
	requires []string
}

func (r requiring) Requires() []string {
	if d, ok := r.Component.(Dependent); ok {
		return append(d.Requires(), r.requires...)
	}
	return r.requires
}

// Task is one-shot work in the graph (preparing the host, joining a
// server): it is ready once fn has returned nil.
func Task(name string, fn func(ctx context.Context) error) Component {
	return task{name: name, fn: fn}
}

type task struct {
	name string
	fn   func(ctx context.Context) error
}

func (t task) Name() string { return t.name }

func (t task) Start(ctx context.Context) (<-chan error, error) { return nil, t.fn(ctx) }

// Build makes a component whose configuration comes from others' outputs:
// build runs when it starts, after what it requires is ready.
func Build(name string, build func() (Component, error)) Component {
	return built{name: name, build: build}
}

type built struct {
	name  string
	build func() (Component, error)
}

func (b built) Name() string { return b.name }

func (b built) Start(ctx context.Context) (<-chan error, error) {
	c, err := b.build()
	if err != nil {
		return nil, err
	}
	return c.Start(ctx)
}

// Early starts c before the graph runs, for set-up that needs it running
// (the datastore holds what the rest of a server is configured from). The
// component it returns takes c's place in the graph: it hands over the
// running c, and the runner stops it in its turn. stop stops c when the
// graph is never run. c may require nothing.
func Early(ctx context.Context, c Component) (adopted Component, stop func(), err error) {
	if len(Requires(c)) > 0 {
		return nil, nil, fmt.Errorf("start %s early: it requires %v", c.Name(), Requires(c))
	}
	cctx, cancel := context.WithCancel(context.Background())
	// An interrupt during the early start ends it as it would in the graph.
	stopWatch := context.AfterFunc(ctx, cancel)
	done, err := c.Start(cctx)
	stopWatch()
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("start %s: %w", c.Name(), err)
	}
	stop = func() {
		cancel()
		if done == nil {
			return
		}
		select {
		case <-done:
		case <-time.After(StopTimeout):
			logrus.Warnf("%s did not stop within %s", c.Name(), StopTimeout)
		}
	}
	return early{name: c.Name(), done: done, cancel: cancel}, stop, nil
}

type early struct {
	name   string
	done   <-chan error
	cancel context.CancelFunc
}

func (e early) Name() string { return e.name }

func (e early) Start(ctx context.Context) (<-chan error, error) {
	context.AfterFunc(ctx, e.cancel)
	return e.done, nil
}

// Output is a value one component produces for the components that require
// it: the producer sets it before it is ready, so a dependent reads it in
// its own Start.
type Output[T any] struct {
	mu    sync.Mutex
	value T
	set   bool
}

// Set records the value.
func (o *Output[T]) Set(v T) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.value, o.set = v, true
}

// Get returns the value; it panics when read before it is set, which only
// a missing dependency declaration can cause.
func (o *Output[T]) Get() T {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.set {
		panic(fmt.Sprintf("component output of type %T read before it was set: a Requires is missing", o.value))
	}
	return o.value
}

// StopTimeout bounds how long one component may take to stop before the
// runner moves on to the next one.
var StopTimeout = 15 * time.Second

type running struct {
	name   string
	cancel context.CancelFunc
	done   <-chan error // nil for finished one-shot work
}

// started is what one component's start came to.
type started struct {
	index  int
	cancel context.CancelFunc
	done   <-chan error
	err    error
	took   time.Duration
}

// exit is how a component reports that it stopped.
type exit struct {
	name string
	err  error
}

// Run starts comps as their requirements allow, calls ready once all are
// ready, and blocks until ctx is cancelled or a component exits on its
// own. It then stops the started components in the reverse order they
// became ready. The error says which component failed; it is nil after a
// requested shutdown. A component may require only components listed
// before it, so the graph has no cycles.
func Run(ctx context.Context, ready func(), comps ...Component) error {
	requires, err := graph(comps)
	if err != nil {
		return err
	}

	readyCh := make([]chan struct{}, len(comps))
	for i := range readyCh {
		readyCh[i] = make(chan struct{})
	}
	// abort cancels the starts under way and those still waiting.
	aborted, abort := context.WithCancel(context.Background())
	defer abort()
	results := make(chan started, len(comps))
	exited := make(chan exit, len(comps))
	for i, c := range comps {
		go func() {
			for _, r := range requires[i] {
				select {
				case <-readyCh[r]:
				case <-aborted.Done():
					results <- started{index: i, err: errAborted}
					return
				}
			}
			cctx, cancel := context.WithCancel(context.Background())
			// An abort while Start runs cancels it; a Start that succeeds
			// anyway is stopped like the others.
			stopWatch := context.AfterFunc(aborted, cancel)
			began := time.Now()
			done, err := c.Start(cctx)
			stopWatch()
			results <- started{index: i, cancel: cancel, done: done, err: err, took: time.Since(began)}
		}()
	}

	var order []running
	stopAll := func() {
		for i := len(order) - 1; i >= 0; i-- {
			r := order[i]
			r.cancel()
			if r.done == nil {
				continue
			}
			logrus.Infof("stopping %s", r.name)
			select {
			case <-r.done:
			case <-time.After(StopTimeout):
				logrus.Warnf("%s did not stop within %s", r.name, StopTimeout)
			}
		}
	}
	// fail aborts the start, collects every start still under way (they
	// return soon: their context is cancelled), then stops what started.
	pending := len(comps)
	fail := func(cause error) error {
		abort()
		for ; pending > 0; pending-- {
			s := <-results
			if s.err == nil {
				order = append(order, running{name: comps[s.index].Name(), cancel: s.cancel, done: s.done})
			} else if s.cancel != nil {
				s.cancel()
			}
		}
		stopAll()
		return cause
	}

	for pending > 0 {
		select {
		case s := <-results:
			pending--
			name := comps[s.index].Name()
			if s.err != nil {
				s.cancel()
				return fail(fmt.Errorf("start %s: %w", name, s.err))
			}
			r := running{name: name, cancel: s.cancel, done: s.done}
			if s.done != nil {
				r.done = relay(name, s.done, exited)
			}
			order = append(order, r)
			close(readyCh[s.index])
			// The time tells a user on a slow disk what the start waits for.
			if s.done == nil {
				logrus.Infof("%s done (in %s)", name, s.took.Round(10*time.Millisecond))
			} else {
				logrus.Infof("%s is running (started in %s)", name, s.took.Round(10*time.Millisecond))
			}
		case e := <-exited:
			return fail(unexpected(e))
		case <-ctx.Done():
			return fail(nil)
		}
	}

	if ready != nil {
		ready()
	}

	select {
	case <-ctx.Done():
		stopAll()
		return nil
	case e := <-exited:
		stopAll()
		return unexpected(e)
	}
}

var errAborted = errors.New("not started: the start was aborted")

func unexpected(e exit) error {
	if e.err == nil {
		e.err = errors.New("exited without an error")
	}
	return fmt.Errorf("%s stopped unexpectedly: %w", e.name, e.err)
}

// Check reports whether comps form a graph Run accepts: unique names, and
// each component requiring only components listed before it.
func Check(comps ...Component) error {
	_, err := graph(comps)
	return err
}

// Requires names the components c starts after.
func Requires(c Component) []string {
	if d, ok := c.(Dependent); ok {
		return d.Requires()
	}
	return nil
}

// graph checks the names and returns, for each component, the indexes of
// the components it requires.
func graph(comps []Component) ([][]int, error) {
	index := map[string]int{}
	requires := make([][]int, len(comps))
	for i, c := range comps {
		if _, dup := index[c.Name()]; dup {
			return nil, fmt.Errorf("two components are named %s", c.Name())
		}
		for _, name := range Requires(c) {
			j, ok := index[name]
			if !ok {
				return nil, fmt.Errorf("component %s requires %s, which is not listed before it", c.Name(), name)
			}
			requires[i] = append(requires[i], j)
		}
		index[c.Name()] = i
	}
	return requires, nil
}

// relay forwards a component's exit to the shared exited channel and gives
// the runner its own done channel to wait on while stopping.
func relay(name string, done <-chan error, exited chan<- exit) <-chan error {
	out := make(chan error, 1)
	go func() {
		err, ok := <-done
		if !ok {
			err = nil
		}
		select {
		case exited <- exit{name, err}:
		default:
		}
		out <- err
		close(out)
	}()
	return out
}
