package flannel

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// nodeWatcher follows this node's own Node object. The kube subnet manager
// gives up on a node without a pod CIDR and never notices the CIDR
// changing, so skiff watches for both itself.
type nodeWatcher struct {
	mu   sync.Mutex
	node *v1.Node // nil while the Node does not exist
	// changed is signalled (without blocking) after every change of node.
	changed chan struct{}
}

func newNodeWatcher() *nodeWatcher {
	return &nodeWatcher{changed: make(chan struct{}, 1)}
}

// run watches the Node named name until ctx ends. The field selector keeps
// the request within what the node authorizer grants a kubelet identity
// (its own Node object only).
func (w *nodeWatcher) run(ctx context.Context, client kubernetes.Interface, name string) {
	sel := fields.OneTermEqualSelector(metav1.ObjectNameField, name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = sel
			return client.CoreV1().Nodes().List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = sel
			return client.CoreV1().Nodes().Watch(ctx, opts)
		},
	}
	_, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		// The wrapper tells the reflector whether the client can stream
		// watch-list results (a fake clientset cannot).
		ListerWatcher: cache.ToListWatcherWithWatchListSemantics(lw, client),
		ObjectType:    &v1.Node{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.set(obj) },
			UpdateFunc: func(_, obj any) { w.set(obj) },
			DeleteFunc: func(any) { w.set(nil) },
		},
	})
	ctrl.RunWithContext(ctx)
}

func (w *nodeWatcher) set(obj any) {
	n, _ := obj.(*v1.Node)
	if n != nil && n.Name == "" {
		n = nil
	}
	w.mu.Lock()
	w.node = n
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *nodeWatcher) get() *v1.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.node
}

// podCIDRs is the node's pod CIDR list as one comparable string.
func podCIDRs(n *v1.Node) string {
	if len(n.Spec.PodCIDRs) > 0 {
		return strings.Join(n.Spec.PodCIDRs, ",")
	}
	return n.Spec.PodCIDR
}

// waitLogEvery spaces the "still waiting" messages.
var waitLogEvery = 30 * time.Second

// waitForPodCIDR blocks until the Node exists and the controller-manager has
// given it a pod CIDR, or ctx ends.
func (w *nodeWatcher) waitForPodCIDR(ctx context.Context, name string) (*v1.Node, error) {
	start := time.Now()
	tick := time.NewTicker(waitLogEvery)
	defer tick.Stop()
	for {
		n := w.get()
		if n != nil && podCIDRs(n) != "" {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for node %q to get a pod CIDR: %w", name, ctx.Err())
		case <-w.changed:
		case <-tick.C:
			if n == nil {
				logrus.Infof("flannel: still waiting for node %q to be registered (%s)", name, time.Since(start).Round(time.Second))
			} else {
				logrus.Infof("flannel: still waiting for node %q to be assigned a pod CIDR by the controller-manager (%s)", name, time.Since(start).Round(time.Second))
			}
		}
	}
}

// forbiddenGrace is how long a Forbidden answer to "list nodes" is retried:
// the permission may come from RBAC objects the server is still applying.
var forbiddenGrace = 2 * time.Minute

// checkNodeListAccess fails early and clearly when the credentials may not
// list all nodes. The kube subnet manager needs that (it learns every other
// node's subnet from the Node objects) and would otherwise only log
// reflector errors for ten minutes before giving up.
func checkNodeListAccess(ctx context.Context, client kubernetes.Interface, kubeconfig string) error {
	deadline := time.Now().Add(forbiddenGrace)
	warned := false
	for {
		_, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case apierrors.IsForbidden(err):
			if time.Now().After(deadline) {
				return fmt.Errorf("the credentials in %s may not list nodes, which flannel needs to learn the other nodes' subnets (grant get, list and watch on nodes): %w", kubeconfig, err)
			}
			if !warned {
				logrus.Warnf("flannel: may not list nodes yet, retrying for up to %s: %v", forbiddenGrace, err)
				warned = true
			}
		default:
			logrus.Debugf("flannel: list nodes: %v", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
