// Package netpol enforces NetworkPolicy on the node: upstream kube-router's
// network policy controller, run in-process on the host's iptables (the
// backend kube-proxy and flannel already use) and ipset.
package netpol

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"

	krnetpol "github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// DefaultNodePortRange is the apiserver's default Service node port range,
// which the controller keeps open to pods selected by a policy.
const DefaultNodePortRange = "30000-32767"

// Controller is the node component that keeps the node's iptables and
// ipsets in line with the cluster's NetworkPolicies.
type Controller struct {
	// Kubeconfig is the node's kubelet credential; the cluster role
	// skiff:network-policy-reader lets nodes read pods, namespaces and
	// NetworkPolicies.
	Kubeconfig string
	NodeName   string
	// ClusterCIDRs and ServiceCIDRs are the cluster's comma-separated
	// ranges, as the node learns them when it joins; the pod ranges decide
	// the address families to enforce.
	ClusterCIDRs  string
	ServiceCIDRs  string
	NodePortRange string
	// SyncPeriod is how often the rules are rebuilt in full even without a
	// change (default 5 minutes, kube-router's own).
	SyncPeriod time.Duration
}

func (c *Controller) Name() string { return "network-policy" }

// families reports which address families the pod network uses.
func families(clusterCIDRs string) (v4, v6 bool, err error) {
	for _, s := range strings.Split(clusterCIDRs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return false, false, fmt.Errorf("cluster CIDR %q: %w", s, err)
		}
		if p.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	if !v4 && !v6 {
		return false, false, errors.New("no cluster CIDR to enforce network policies for")
	}
	return v4, v6, nil
}

// routerConfig is the subset of kube-router's configuration its network
// policy controller reads; its router, service proxy and metrics stay off.
func (c *Controller) routerConfig() (*options.KubeRouterConfig, error) {
	v4, v6, err := families(c.ClusterCIDRs)
	if err != nil {
		return nil, err
	}
	kr := options.NewKubeRouterConfig()
	kr.ClusterIPCIDRs = nil
	for _, s := range strings.Split(c.ServiceCIDRs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			kr.ClusterIPCIDRs = append(kr.ClusterIPCIDRs, s)
		}
	}
	kr.EnableIPv4, kr.EnableIPv6 = v4, v6
	kr.NodePortRange = c.NodePortRange
	if kr.NodePortRange == "" {
		kr.NodePortRange = DefaultNodePortRange
	}
	kr.HostnameOverride = c.NodeName
	kr.RunFirewall = true
	kr.RunRouter = false
	kr.RunServiceProxy = false
	kr.MetricsEnabled = false
	if c.SyncPeriod > 0 {
		kr.IPTablesSyncPeriod = c.SyncPeriod
	}
	return kr, nil
}

func (c *Controller) Start(ctx context.Context) (<-chan error, error) {
	if _, err := exec.LookPath("ipset"); err != nil {
		return nil, errors.New("ipset not found in PATH: enforcing NetworkPolicy needs it; install the ipset package (apt-get install ipset), or start the server with --disable-network-policy")
	}
	kr, err := c.routerConfig()
	if err != nil {
		return nil, err
	}
	client, err := kubeclient.New(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	// The controller takes the node's addresses from its Node once, when
	// it is built: wait until the kubelet has registered it with one
	// address per enforced family.
	if err := waitForNodeAddresses(ctx, client, c.NodeName, kr.EnableIPv4, kr.EnableIPv6); err != nil {
		return nil, err
	}

	runCtx, stop := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods().Informer()
	namespaces := factory.Core().V1().Namespaces().Informer()
	policies := factory.Networking().V1().NetworkPolicies().Informer()
	factory.Start(runCtx.Done())
	for typ, synced := range factory.WaitForCacheSync(ctx.Done()) {
		if !synced {
			stop()
			return nil, fmt.Errorf("network policy controller: list %v: %w", typ, context.Cause(ctx))
		}
	}

	iptablesHandlers, ipsetHandlers, err := krnetpol.NewIPTablesHandlers(kr)
	if err != nil {
		stop()
		return nil, fmt.Errorf("network policy controller: %w", err)
	}
	npc, err := krnetpol.NewNetworkPolicyController(client, kr, pods, policies, namespaces, &sync.Mutex{}, iptablesHandlers, ipsetHandlers)
	if err != nil {
		stop()
		return nil, fmt.Errorf("start the network policy controller: %w", err)
	}
	for _, h := range []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}{{pods, npc.PodEventHandler}, {namespaces, npc.NamespaceEventHandler}, {policies, npc.NetworkPolicyEventHandler}} {
		if _, err := h.informer.AddEventHandler(h.handler); err != nil {
			stop()
			return nil, fmt.Errorf("network policy controller: watch: %w", err)
		}
	}

	// The controller reports a heartbeat after every sync and blocks until
	// someone takes it, a sync that ends after the stop included; skiff has
	// no use for kube-router's health server.
	heartbeats := make(chan *healthcheck.ControllerHeartbeat)
	stopped := make(chan struct{})
	go func() {
		for {
			select {
			case <-heartbeats:
			case <-stopped:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go npc.Run(heartbeats, runCtx.Done(), &wg)
	logrus.Infof("network policy controller running on node %s (ipv4 %t, ipv6 %t)", c.NodeName, kr.EnableIPv4, kr.EnableIPv6)

	done := make(chan error, 1)
	go func() {
		defer close(done)
		<-ctx.Done()
		stop()
		wg.Wait()
		close(stopped)
	}()
	return done, nil
}

func waitForNodeAddresses(ctx context.Context, client kubernetes.Interface, name string, v4, v6 bool) error {
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			logrus.Debugf("network policy controller: get node %s: %v", name, err)
			return false, nil
		}
		has4, has6 := false, false
		for _, a := range node.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				has4 = has4 || ip.Is4()
				has6 = has6 || ip.Is6()
			}
		}
		return (has4 || !v4) && (has6 || !v6), nil
	})
	if err != nil {
		return fmt.Errorf("network policy controller: wait for node %s to report its addresses: %w", name, err)
	}
	return nil
}
