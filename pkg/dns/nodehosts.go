// Package dns keeps cluster DNS aware of the nodes: it writes one
// "IP name" line per node into the NodeHosts key of CoreDNS's ConfigMap,
// which CoreDNS's hosts plugin serves, so pods resolve node names.
package dns

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// ConfigMap and key CoreDNS reads the node table from.
const (
	configMapNamespace = "kube-system"
	configMapName      = "coredns"
	nodeHostsKey       = "NodeHosts"
)

// NodeHosts is the server component that maintains the node table.
type NodeHosts struct {
	Kubeconfig string
}

func (n *NodeHosts) Name() string { return "node-hosts" }

func (n *NodeHosts) Start(ctx context.Context) (<-chan error, error) {
	cs, err := kubeclient.New(n.Kubeconfig)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	nodes := factory.Core().V1().Nodes()
	// The ConfigMap is watched too: when the deploy controller (re)creates
	// it, the table goes back in at once.
	cms := informers.NewSharedInformerFactoryWithOptions(cs, 10*time.Minute,
		informers.WithNamespace(configMapNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + configMapName }))

	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	if _, err := nodes.Informer().AddEventHandler(handler); err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	if _, err := cms.Core().V1().ConfigMaps().Informer().AddEventHandler(handler); err != nil {
		return nil, fmt.Errorf("watch the coredns ConfigMap: %w", err)
	}
	factory.Start(ctx.Done())
	cms.Start(ctx.Done())

	done := make(chan error, 1)
	go func() {
		defer close(done)
		factory.WaitForCacheSync(ctx.Done())
		cms.WaitForCacheSync(ctx.Done())
		for {
			select {
			case <-ctx.Done():
				factory.Shutdown()
				cms.Shutdown()
				return
			case <-changed:
			}
			list, err := nodes.Lister().List(labels.Everything())
			if err != nil {
				continue
			}
			if err := n.update(ctx, cs, Table(list)); err != nil && ctx.Err() == nil {
				logrus.Warnf("update node names for cluster DNS: %v", err)
				time.AfterFunc(5*time.Second, poke)
			}
		}
	}()
	return done, nil
}

func (n *NodeHosts) update(ctx context.Context, cs kubernetes.Interface, table string) error {
	cm, err := cs.CoreV1().ConfigMaps(configMapNamespace).Get(ctx, configMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // CoreDNS is disabled or not deployed yet
	}
	if err != nil {
		return err
	}
	if cm.Data[nodeHostsKey] == table {
		return nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[nodeHostsKey] = table
	_, err = cs.CoreV1().ConfigMaps(configMapNamespace).Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// Table renders the hosts-file lines for nodes: every internal and external
// address with the node's name, sorted so the content only changes when the
// nodes do.
func Table(nodes []*corev1.Node) string {
	var lines []string
	for _, node := range nodes {
		seen := map[string]bool{}
		for _, addr := range node.Status.Addresses {
			if addr.Type != corev1.NodeInternalIP && addr.Type != corev1.NodeExternalIP {
				continue
			}
			if addr.Address == "" || seen[addr.Address] {
				continue
			}
			seen[addr.Address] = true
			lines = append(lines, addr.Address+" "+node.Name)
		}
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
