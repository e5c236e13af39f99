package agent

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"

	"github.com/skiff-io/skiff/pkg/agent/loadbalancer"
	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// serverBalancer runs the client-side load balancer in front of every
// apiserver of the cluster; its discovery component keeps the server list
// current from the `kubernetes` Service's endpoints.
type serverBalancer struct {
	address   string // where the node's components connect, on loopback
	serverURL string // --server, always kept as a fallback
	lb        *loadbalancer.LoadBalancer
}

func newServerBalancer(address, serverURL string) *serverBalancer {
	return &serverBalancer{address: address, serverURL: serverURL}
}

// URL is what the node's components use as the apiserver address.
func (s *serverBalancer) URL() string { return "https://" + s.address }

func (s *serverBalancer) Name() string { return "load-balancer" }

func (s *serverBalancer) Start(ctx context.Context) (<-chan error, error) {
	joined, err := s.joined()
	if err != nil {
		return nil, err
	}
	if s.lb, err = loadbalancer.New(s.address, []string{joined}); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		if err := s.lb.Run(ctx); err != nil {
			done <- err
		}
		close(done)
	}()
	return done, nil
}

// joined is host:port of --server.
func (s *serverBalancer) joined() (string, error) {
	u, err := url.Parse(s.serverURL)
	if err != nil {
		return "", fmt.Errorf("invalid server URL %q: %w", s.serverURL, err)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return u.Host, nil
}

// discovery keeps the balancer's server list current, watching the
// `kubernetes` EndpointSlices with kubeconfig's credentials (kube-proxy's).
// It watches rather than polls: the list must be complete before a server
// fails, since the watch itself goes through the balancer.
func (s *serverBalancer) discovery(kubeconfig string) component.Component {
	return &serverDiscovery{balancer: s, kubeconfig: kubeconfig}
}

type serverDiscovery struct {
	balancer   *serverBalancer
	kubeconfig string
}

func (d *serverDiscovery) Name() string { return "server-discovery" }

func (d *serverDiscovery) Start(ctx context.Context) (<-chan error, error) {
	client, err := kubeclient.New(d.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("client for server discovery: %w", err)
	}
	joined, err := d.balancer.joined()
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(metav1.NamespaceDefault),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=kubernetes"
		}))
	informer := factory.Discovery().V1().EndpointSlices().Informer()
	if err := kubeclient.OnChange("the apiservers' endpoints", informer, func() {
		var eps []*discoveryv1.EndpointSlice
		for _, o := range informer.GetStore().List() {
			if es, ok := o.(*discoveryv1.EndpointSlice); ok {
				eps = append(eps, es)
			}
		}
		// --server stays a candidate: it is how the node reached the
		// cluster first, and may be a name that outlives addresses.
		d.balancer.lb.SetServers(append(apiServers(eps), joined))
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	done := make(chan error)
	go func() {
		<-ctx.Done()
		factory.Shutdown()
		close(done)
	}()
	return done, nil
}

// apiServers returns host:port of every ready apiserver endpoint.
func apiServers(eps []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, es := range eps {
		var port int32
		for _, p := range es.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "https") {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				out = append(out, net.JoinHostPort(addr, strconv.Itoa(int(port))))
			}
		}
	}
	slices.Sort(out)
	return out
}
