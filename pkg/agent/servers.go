package agent

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

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

// discovery refreshes the balancer's server list every 30 s, reading the
// EndpointSlices with kubeconfig's credentials (kube-proxy's).
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
	done := make(chan error)
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(30 * time.Second):
			}
			servers, err := apiServers(ctx, client)
			if err != nil {
				logrus.Debugf("load balancer: list apiservers: %v", err)
				continue
			}
			d.balancer.lb.SetServers(append(servers, joined))
		}
	}()
	return done, nil
}

// apiServers returns host:port of every ready apiserver endpoint.
func apiServers(ctx context.Context, client kubernetes.Interface) ([]string, error) {
	slices, err := client.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=kubernetes",
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, es := range slices.Items {
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
	return out, nil
}
