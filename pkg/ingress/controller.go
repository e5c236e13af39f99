package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/pkg/eventreport"
	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// tlsSecretSelector selects the Secrets the controller watches.
var tlsSecretSelector = fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)).String()

// Options configure a Controller.
type Options struct {
	// IngressClass is the IngressClass name whose Ingresses are served.
	IngressClass string
	// PodNamespace and PodSelector find the controller's own pods, whose
	// nodes become the Ingresses' load balancer addresses. Without a
	// namespace the controller leaves Ingress status alone.
	PodNamespace string
	PodSelector  labels.Selector
	// Recorder receives the Warning Events about broken Ingresses.
	Recorder record.EventRecorder
	// Resync is how often every object is re-delivered; zero means ten
	// minutes.
	Resync time.Duration
	// Debounce is how long to wait after a change for more changes before
	// rebuilding; zero means 100ms.
	Debounce time.Duration
}

// Controller keeps the routing configuration in step with the cluster. It
// owns the informers and rebuilds the whole configuration on any change,
// which is simple and, debounced, cheap at the size of cluster Skiff runs.
type Controller struct {
	opts      Options
	factories []informers.SharedInformerFactory
	ingresses networkinglisters.IngressLister
	classes   networkinglisters.IngressClassLister
	pods      corelisters.PodLister // nil when status is not managed

	builder  *configBuilder
	reporter *eventreport.Reporter[*networkingv1.Ingress]
	status   *statusWriter
	fallback *tls.Certificate

	config  atomic.Pointer[routingConfig]
	synced  atomic.Bool
	changed chan struct{}
}

// NewController sets up the informers; nothing is watched until Run.
func NewController(client kubernetes.Interface, opts Options) (*Controller, error) {
	if opts.Resync == 0 {
		opts.Resync = 10 * time.Minute
	}
	if opts.Debounce == 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.PodSelector == nil {
		opts.PodSelector = labels.Everything()
	}
	if opts.Recorder == nil {
		return nil, errors.New("ingress controller needs an event recorder")
	}
	fallback, err := newFallbackCertificate()
	if err != nil {
		return nil, err
	}

	c := &Controller{
		opts:     opts,
		reporter: eventreport.NewReporter[*networkingv1.Ingress](opts.Recorder),
		status:   &statusWriter{client: client},
		fallback: fallback,
		changed:  make(chan struct{}, 1),
	}

	cluster := informers.NewSharedInformerFactory(client, opts.Resync)
	c.factories = append(c.factories, cluster)
	ingresses := cluster.Networking().V1().Ingresses()
	classes := cluster.Networking().V1().IngressClasses()
	services := cluster.Core().V1().Services()
	slices := cluster.Discovery().V1().EndpointSlices()
	// Only TLS Secrets can back an Ingress: filtering on the server keeps
	// every other Secret of the cluster (service account tokens, passwords,
	// registry credentials) out of this process's memory.
	tlsOnly := informers.NewSharedInformerFactoryWithOptions(client, opts.Resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = tlsSecretSelector }))
	c.factories = append(c.factories, tlsOnly)
	secrets := tlsOnly.Core().V1().Secrets()
	watched := []watchedInformer{
		{"ingresses", ingresses.Informer()},
		{"ingressclasses", classes.Informer()},
		{"services", services.Informer()},
		{"endpointslices", slices.Informer()},
		{"secrets", secrets.Informer()},
	}
	c.ingresses = ingresses.Lister()
	c.classes = classes.Lister()
	c.builder = newConfigBuilder(services.Lister(), slices.Lister(), secrets.Lister())

	if opts.PodNamespace != "" {
		own := informers.NewSharedInformerFactoryWithOptions(client, opts.Resync,
			informers.WithNamespace(opts.PodNamespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = opts.PodSelector.String() }))
		c.factories = append(c.factories, own)
		pods := own.Core().V1().Pods()
		watched = append(watched, watchedInformer{"pods", pods.Informer()})
		c.pods = pods.Lister()
	}

	for _, w := range watched {
		if err := c.watch(w.resource, w.informer); err != nil {
			return nil, err
		}
	}
	return c, nil
}

type watchedInformer struct {
	resource string
	informer cache.SharedIndexInformer
}

func (c *Controller) watch(resource string, informer cache.SharedIndexInformer) error {
	return kubeclient.OnChange(resource, informer, c.markChanged)
}

func (c *Controller) markChanged() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Run watches the cluster and keeps the routing configuration current
// until ctx is cancelled.
func (c *Controller) Run(ctx context.Context) error {
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range c.factories {
			f.Shutdown()
		}
	}()
	for _, f := range c.factories {
		for informerType, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					// Asked to stop before the caches filled; not a failure.
					return nil
				}
				return fmt.Errorf("sync cache of %v: informer stopped", informerType)
			}
		}
	}
	// Drop the changes the initial listing reported; the first build below
	// sees all of them.
	select {
	case <-c.changed:
	default:
	}
	c.rebuild(ctx)
	c.synced.Store(true)
	logrus.Infof("ingress controller for class %q synced and serving", c.opts.IngressClass)

	debounce := time.NewTimer(c.opts.Debounce)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.changed:
		}
		debounce.Reset(c.opts.Debounce)
		select {
		case <-ctx.Done():
			return nil
		case <-debounce.C:
		}
		// Changes that arrived while waiting are part of this build.
		select {
		case <-c.changed:
		default:
		}
		c.rebuild(ctx)
	}
}

func (c *Controller) rebuild(ctx context.Context) {
	handled, err := c.handledIngresses()
	if err != nil {
		logrus.Errorf("%v", err)
		return
	}
	config, problems := c.builder.build(handled)
	c.config.Store(config)
	c.reporter.Report(handled, problems)
	logrus.Debugf("routing configuration rebuilt from %d ingresses", len(handled))

	if c.pods == nil {
		return
	}
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		logrus.Errorf("list controller pods: %v", err)
		return
	}
	c.status.sync(ctx, handled, loadBalancerAddresses(pods, c.opts.PodSelector))
}

// handledIngresses returns the Ingresses of this controller's class, oldest
// first, the order in which their rules take precedence.
func (c *Controller) handledIngresses() ([]*networkingv1.Ingress, error) {
	class, err := c.classes.Get(c.opts.IngressClass)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get ingress class %s: %w", c.opts.IngressClass, err)
	}
	filter := newClassFilter(c.opts.IngressClass, class)
	all, err := c.ingresses.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list ingresses: %w", err)
	}
	var handled []*networkingv1.Ingress
	for _, ing := range all {
		if filter.handles(ing) {
			handled = append(handled, ing)
		}
	}
	sort.Slice(handled, func(i, j int) bool {
		a, b := handled[i], handled[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return handled, nil
}

// Routes returns the route table in use, or nil before the first build.
func (c *Controller) Routes() *RouteTable {
	if config := c.config.Load(); config != nil {
		return config.routes
	}
	return nil
}

// Proxy returns the handler for the HTTP and HTTPS listeners.
func (c *Controller) Proxy() http.Handler {
	return NewProxy(c.Routes)
}

// TLSConfig returns the configuration of the HTTPS listener. It looks up
// the certificate on every handshake, so certificate changes apply to new
// connections without restarting the listener.
func (c *Controller) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: c.certificateFor,
	}
}

func (c *Controller) certificateFor(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if config := c.config.Load(); config != nil {
		if cert := config.certificates.lookup(hello.ServerName); cert != nil {
			return cert, nil
		}
	}
	return c.fallback, nil
}

// Synced reports whether the caches have synced and the first routing
// configuration is in place.
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
