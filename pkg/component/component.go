// Package component runs skiff's long-lived pieces in dependency order and
// stops them in reverse, turning any unexpected exit into a clean shutdown.
// A few upstream goroutines outlive their component's stop (the kubelet's,
// kube-proxy's run loop); they end with the process, which exits once Run
// returns (docs/architecture.md, Restarts and failures).
package component

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// Component is one long-running piece of skiff (datastore, apiserver, ...).
type Component interface {
	Name() string
	// Start returns once the component is serving. The component keeps
	// running until ctx is cancelled; the returned channel receives its exit
	// error (nil on a requested stop) and is then closed.
	Start(ctx context.Context) (<-chan error, error)
}

// StopTimeout bounds how long one component may take to stop before the
// runner moves on to the next one.
var StopTimeout = 15 * time.Second

type running struct {
	name   string
	cancel context.CancelFunc
	done   <-chan error
}

// Run starts comps in order, calls ready once all are serving, and blocks
// until ctx is cancelled or a component exits on its own. It then stops the
// started components in reverse order. The error says which component
// failed; it is nil after a requested shutdown.
func Run(ctx context.Context, ready func(), comps ...Component) error {
	var started []running
	stopAll := func() {
		for i := len(started) - 1; i >= 0; i-- {
			r := started[i]
			logrus.Infof("stopping %s", r.name)
			r.cancel()
			select {
			case <-r.done:
			case <-time.After(StopTimeout):
				logrus.Warnf("%s did not stop within %s", r.name, StopTimeout)
			}
		}
	}

	exited := make(chan exit, len(comps))

	for _, c := range comps {
		if ctx.Err() != nil {
			stopAll()
			return nil
		}
		cctx, cancel := context.WithCancel(context.Background())
		began := time.Now()
		startErr := make(chan error, 1)
		var done <-chan error
		go func() {
			var err error
			done, err = c.Start(cctx)
			startErr <- err
		}()
		var err error
		select {
		case err = <-startErr:
		case <-ctx.Done():
			// Give the pending start a chance to notice cancellation, and
			// if it got going anyway, wait for it to stop like the others.
			cancel()
			if err := <-startErr; err == nil && done != nil {
				started = append(started, running{name: c.Name(), cancel: cancel, done: done})
			}
			stopAll()
			return nil
		}
		if err != nil {
			cancel()
			stopAll()
			return fmt.Errorf("start %s: %w", c.Name(), err)
		}
		r := running{name: c.Name(), cancel: cancel, done: relay(c.Name(), done, exited)}
		started = append(started, r)
		// The time tells a user on a slow disk what the start waits for.
		logrus.Infof("%s is running (started in %s)", c.Name(), time.Since(began).Round(10*time.Millisecond))
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
		if e.err == nil {
			e.err = errors.New("exited without an error")
		}
		return fmt.Errorf("%s stopped unexpectedly: %w", e.name, e.err)
	}
}

// exit is how a component reports that it stopped.
type exit struct {
	name string
	err  error
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
