package servicelb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-io/skiff/pkg/eventreport"
	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// syncKey is the only item ever queued: every change re-plans all
// Services, because one Service's ports decide another's addresses.
const syncKey = "all"

// Options configure a Controller.
type Options struct {
	// Reserved are the ports no Service may have.
	Reserved []ReservedPort
	// Recorder receives the Events about Services.
	Recorder record.EventRecorder
	// Resync is how often every object is re-delivered, which also retries
	// anything a lost watch event left undone; zero means five minutes.
	Resync time.Duration
	// Debounce is how long after a change to wait for more before a sync;
	// zero means 200ms.
	Debounce time.Duration
}

// Controller keeps the status of LoadBalancer Services in step with the
// nodes, their ports and, for externalTrafficPolicy Local, their endpoints.
type Controller struct {
	opts     Options
	reserved map[portKey]string

	factory  informers.SharedInformerFactory
	services corelisters.ServiceLister
	nodes    corelisters.NodeLister
	slices   discoverylisters.EndpointSliceLister
	queue    workqueue.TypedRateLimitingInterface[string]

	reporter *eventreport.Reporter[*corev1.Service]
	status   *statusWriter
	synced   atomic.Bool
}

// NewController sets up the informers; nothing is watched until Run.
func NewController(client kubernetes.Interface, opts Options) (*Controller, error) {
	if opts.Resync == 0 {
		opts.Resync = 5 * time.Minute
	}
	if opts.Debounce == 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	if opts.Recorder == nil {
		return nil, errors.New("servicelb controller needs an event recorder")
	}
	reserved := make(map[portKey]string, len(opts.Reserved))
	for _, r := range opts.Reserved {
		if earlier, ok := reserved[r.key()]; ok {
			return nil, fmt.Errorf("port %s is reserved twice, for %s and for %s", r.key(), earlier, r.Reason)
		}
		reserved[r.key()] = r.Reason
	}

	c := &Controller{
		opts:     opts,
		reserved: reserved,
		factory:  informers.NewSharedInformerFactoryWithOptions(client, opts.Resync, informers.WithTransform(slimDown)),
		// One key, so backoff is per sync: a failing write slows retries
		// down to one a minute instead of hammering the API server.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "servicelb"}),
		reporter: eventreport.NewReporter[*corev1.Service](opts.Recorder),
		status:   &statusWriter{client: client, recorder: opts.Recorder},
	}
	services := c.factory.Core().V1().Services()
	nodes := c.factory.Core().V1().Nodes()
	endpointSlices := c.factory.Discovery().V1().EndpointSlices()
	c.services = services.Lister()
	c.nodes = nodes.Lister()
	c.slices = endpointSlices.Lister()
	for _, w := range []struct {
		resource string
		informer cache.SharedIndexInformer
	}{
		{"services", services.Informer()},
		{"nodes", nodes.Informer()},
		{"endpointslices", endpointSlices.Informer()},
	} {
		if err := c.watch(w.resource, w.informer); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// slimDown drops from the cached objects what no sync reads and what makes
// up much of their size, to keep the controller's memory small: managed
// fields on everything, and a node's list of pulled images, which alone can
// be tens of kilobytes per node.
func slimDown(obj any) (any, error) {
	if accessor, err := meta.Accessor(obj); err == nil {
		accessor.SetManagedFields(nil)
	}
	if node, ok := obj.(*corev1.Node); ok {
		node.Status.Images = nil
	}
	return obj, nil
}

func (c *Controller) watch(resource string, informer cache.SharedIndexInformer) error {
	return kubeclient.OnChange(resource, informer, func() { c.queue.AddAfter(syncKey, c.opts.Debounce) })
}

// Run watches the cluster and keeps Service status current until ctx is
// cancelled.
func (c *Controller) Run(ctx context.Context) error {
	defer c.factory.Shutdown()
	defer c.queue.ShutDown()
	c.factory.Start(ctx.Done())
	for informerType, ok := range c.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				// Asked to stop before the caches filled; not a failure.
				return nil
			}
			return fmt.Errorf("sync cache of %v: informer stopped", informerType)
		}
	}
	c.synced.Store(true)
	logrus.Infof("servicelb controller synced, %d ports reserved", len(c.reserved))
	c.queue.Add(syncKey)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for c.processNext(ctx) {
		}
	}()
	select {
	case <-ctx.Done():
	case <-stopped:
	}
	c.queue.ShutDown()
	<-stopped
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx); err != nil {
		if ctx.Err() != nil {
			return true
		}
		logrus.Errorf("%v (retrying)", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// sync plans all Services from the caches, writes the statuses that
// differ and announces new problems.
func (c *Controller) sync(ctx context.Context) error {
	var state clusterState
	var err error
	if state.services, err = c.services.List(labels.Everything()); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	if state.nodes, err = c.nodes.List(labels.Everything()); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	if state.slices, err = c.slices.List(labels.Everything()); err != nil {
		return fmt.Errorf("list endpointslices: %w", err)
	}
	p := computePlan(state, c.reserved)
	err = c.status.sync(ctx, p.statuses)
	c.reporter.Report(p.handled, p.problems)
	logrus.Debugf("synced %d LoadBalancer services, %d problems", len(p.handled), len(p.problems))
	return err
}

// Synced reports whether the caches have synced.
func (c *Controller) Synced() bool { return c.synced.Load() }

// Healthz answers 200 once the controller is synced and 503 before.
func (c *Controller) Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !c.Synced() {
			http.Error(w, "informer caches not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}
