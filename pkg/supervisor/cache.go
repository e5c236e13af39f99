package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// errCacheNotReady means the join endpoints cannot yet check a join token
// made by `skiff token create`: the server is still starting.
var errCacheNotReady = errors.New("the server is starting and cannot check join tokens yet; try again in a few seconds")

// Cache keeps what the join endpoints look up (join-token Secrets, Node
// addresses) in informers, so that an unauthenticated request costs no
// apiserver round trip however many arrive. As each Node appears (and on
// every server start, for all of them) it makes the Node the owner of its
// node-password Secret, so that deleting a Node frees its name
// (OwnNodePassword).
type Cache struct {
	// Client returns a client for the cluster; Start calls it once the
	// apiserver serves.
	Client func() (kubernetes.Interface, error)

	tokens atomic.Pointer[corelisters.SecretNamespaceLister]
	nodes  atomic.Pointer[corelisters.NodeLister]
}

// Name implements component.Component.
func (c *Cache) Name() string { return "join cache" }

// Start fills the cache and returns once it is in sync with the apiserver.
func (c *Cache) Start(ctx context.Context) (<-chan error, error) {
	client, err := c.Client()
	if err != nil {
		return nil, fmt.Errorf("join cache: %w", err)
	}
	// Only bootstrap-token Secrets in kube-system: the join endpoints have
	// no business caching any other Secret.
	tokenFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
		informers.WithNamespace(tokenNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "type=" + bootstrapTokenType }))
	tokens := tokenFactory.Core().V1().Secrets()
	nodeFactory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	nodes := nodeFactory.Core().V1().Nodes()
	tokenInformer, nodeInformer := tokens.Informer(), nodes.Informer()
	if _, err := nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			node, ok := obj.(*corev1.Node)
			if !ok {
				return
			}
			if err := OwnNodePassword(ctx, client, node); err != nil && ctx.Err() == nil {
				logrus.Warnf("%v; deleting the Node will not free its name until a server restarts", err)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("join cache: watch nodes: %w", err)
	}

	tokenFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), tokenInformer.HasSynced, nodeInformer.HasSynced) {
		tokenFactory.Shutdown()
		nodeFactory.Shutdown()
		return nil, errors.New("join cache: stopped before it was in sync with the apiserver")
	}
	tokenLister := tokens.Lister().Secrets(tokenNamespace)
	nodeLister := nodes.Lister()
	c.tokens.Store(&tokenLister)
	c.nodes.Store(&nodeLister)

	done := make(chan error, 1)
	go func() {
		<-ctx.Done()
		c.tokens.Store(nil)
		c.nodes.Store(nil)
		tokenFactory.Shutdown()
		nodeFactory.Shutdown()
		close(done)
	}()
	return done, nil
}

// joinToken returns the bootstrap-token Secret with the given ID, nil when
// there is none.
func (c *Cache) joinToken(id string) (*corev1.Secret, error) {
	lister := c.tokens.Load()
	if lister == nil {
		return nil, errCacheNotReady
	}
	s, err := (*lister).Get(bootstrapTokenPrefix + id)
	if err != nil {
		return nil, nil //nolint:nilerr // not found: no such token
	}
	return s, nil
}

// nodeWithAddress returns the name of a Node other than self that reports
// ip as one of its addresses, or "" when there is none.
func (c *Cache) nodeWithAddress(self string, ip net.IP) (string, error) {
	lister := c.nodes.Load()
	if lister == nil {
		return "", errCacheNotReady
	}
	nodes, err := (*lister).List(labels.Everything())
	if err != nil {
		return "", fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if other := net.ParseIP(a.Address); other != nil && other.Equal(ip) {
				return n.Name, nil
			}
		}
	}
	return "", nil
}

// Nodes returns the cached Node objects.
func (c *Cache) Nodes() ([]*corev1.Node, error) {
	lister := c.nodes.Load()
	if lister == nil {
		return nil, errCacheNotReady
	}
	return (*lister).List(labels.Everything())
}
