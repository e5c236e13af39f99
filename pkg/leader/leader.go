// Package leader runs a component on one server of a highly available
// cluster at a time: the servers contend for a Lease per component, and
// only the holder starts it. Controllers that write to the cluster (the
// manifests, CoreDNS's node table) would otherwise fight over the same
// objects from every server.
package leader

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/skiff-io/skiff/pkg/component"
)

// leaseNamespace holds the Leases, beside those of the upstream
// controller-manager and scheduler.
const leaseNamespace = metav1.NamespaceSystem

// timing is the election's durations; tests shorten them.
type timing struct {
	lease, renewDeadline, retry time.Duration
}

// The values the upstream controller-manager and scheduler use: a leader
// that cannot renew for 10 s stops, and another server takes over once the
// lease has not been renewed for 15 s, so the two do not overlap.
var defaultTiming = timing{lease: 15 * time.Second, renewDeadline: 10 * time.Second, retry: 2 * time.Second}

// Elected returns c run only while this server holds the Lease
// kube-system/skiff-<c.Name()>. identity names this server in the Lease;
// it must differ per process start, or a restarted server would take the
// lease its previous run still holds as its own. The wrapper keeps c's
// name and requirements, and is ready at once: the rest of the graph does
// not wait for leadership.
func Elected(c component.Component, client func() (kubernetes.Interface, error), identity string) component.Component {
	return &elected{c: c, client: client, identity: identity, timing: defaultTiming}
}

type elected struct {
	c        component.Component
	client   func() (kubernetes.Interface, error)
	identity string
	timing   timing
}

func (e *elected) Name() string { return e.c.Name() }

// Requires makes the wrapper a component.Dependent always, so it starts
// (and begins to contend) at the point in the graph c would.
func (e *elected) Requires() []string { return component.Requires(e.c) }

func (e *elected) leaseName() string { return "skiff-" + e.c.Name() }

func (e *elected) Start(ctx context.Context) (<-chan error, error) {
	if e.identity == "" {
		return nil, errors.New("leader election needs an identity")
	}
	// A bad name would otherwise only show as the election's create
	// errors, retried forever, with c never started.
	if errs := validation.IsDNS1123Subdomain(e.leaseName()); len(errs) > 0 {
		return nil, fmt.Errorf("lease name %s: %s", e.leaseName(), strings.Join(errs, "; "))
	}
	client, err := e.client()
	if err != nil {
		return nil, fmt.Errorf("client for leader election: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := e.term(ctx, client); err != nil {
				done <- err
				return
			}
		}
	}()
	return done, nil
}

// term contends for the lease and, once it holds it, runs c until the
// lease is lost, the wrapper stops or c fails. It returns only c's
// failure, after the lease is released.
func (e *elected) term(ctx context.Context, client kubernetes.Interface) error {
	// The election has a context of its own, ended only once c has
	// stopped: ending it releases the lease, and another server must not
	// start c while this one's is still running.
	electCtx, stopElecting := context.WithCancel(context.Background())
	defer stopElecting()
	// The elector calls back in a goroutine of its own; c runs here
	// instead, so that stopping knows whether c runs and waits for it.
	leading := make(chan context.Context)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: leaseNamespace, Name: e.leaseName()},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.identity},
		},
		LeaseDuration:   e.timing.lease,
		RenewDeadline:   e.timing.renewDeadline,
		RetryPeriod:     e.timing.retry,
		ReleaseOnCancel: true,
		Name:            e.leaseName(),
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				select {
				case leading <- leadCtx:
				case <-leadCtx.Done():
				}
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	electing := make(chan struct{})
	go func() {
		defer close(electing)
		le.Run(electCtx)
	}()
	release := func() {
		stopElecting()
		<-electing
	}

	select {
	case <-ctx.Done():
		release()
		return nil
	case <-electing:
		// The term ended before c was taken up (a lease won and lost at
		// once); contend again.
		return nil
	case leadCtx := <-leading:
		err := e.lead(ctx, leadCtx)
		release()
		return err
	}
}

// lead runs c for as long as leadCtx (the term) and ctx (the wrapper)
// last, and returns c's failure: an error from its start, or an exit of
// its own while leading.
func (e *elected) lead(ctx, leadCtx context.Context) error {
	if ctx.Err() != nil {
		// Elected just as the wrapper stops: nothing to start.
		return nil
	}
	name := e.c.Name()
	logrus.Infof("leading %s as %s (lease %s/%s)", name, e.identity, leaseNamespace, e.leaseName())
	runCtx, cancel := context.WithCancel(leadCtx)
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()

	stopped := func(stopErr error) {
		if ctx.Err() != nil {
			logrus.Infof("stopped leading %s as %s: stopping", name, e.identity)
		} else {
			logrus.Infof("%s lost the lease %s/%s: stopped %s", e.identity, leaseNamespace, e.leaseName(), name)
		}
		// As the runner does on a requested stop, a stop error is only
		// reported, not a failure.
		if stopErr != nil {
			logrus.Warnf("%s stopped with: %v", name, stopErr)
		}
	}

	cdone, err := e.c.Start(runCtx)
	if err != nil {
		if runCtx.Err() != nil {
			// The start was cut short by the stop or the lost lease.
			stopped(nil)
			return nil
		}
		return fmt.Errorf("start while leading: %w", err)
	}
	if cdone == nil {
		// One-shot work is done; the lease is kept so that no other
		// server redoes it while this one leads.
		<-runCtx.Done()
		stopped(nil)
		return nil
	}
	select {
	case err, ok := <-cdone:
		if runCtx.Err() == nil {
			if !ok || err == nil {
				err = errors.New("exited without an error")
			}
			return err
		}
		stopped(err)
	case <-runCtx.Done():
		stopped(<-cdone)
	}
	return nil
}
