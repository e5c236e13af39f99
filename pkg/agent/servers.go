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
	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// serverBalancer runs the client-side load balancer and keeps its server
// list current from the `kubernetes` Service's endpoints, which list every
// apiserver of the cluster.
type serverBalancer struct {
	lb         *loadbalancer.LoadBalancer
	joined     string // host:port of --server, always kept as a fallback
	kubeconfig string // read access to EndpointSlices (kube-proxy's)
}

func newServerBalancer(address, serverURL string) (*serverBalancer, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("invalid server URL %q: %w", serverURL, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	lb, err := loadbalancer.New(address, []string{host})
	if err != nil {
		return nil, err
	}
	return &serverBalancer{lb: lb, joined: host}, nil
}

// URL is what the node's components use as the apiserver address.
func (s *serverBalancer) URL() string { return "https://" + s.lb.Address() }

func (s *serverBalancer) Name() string { return "load-balancer" }

func (s *serverBalancer) Start(ctx context.Context) (<-chan error, error) {
	done := make(chan error, 1)
	go func() {
		if err := s.lb.Run(ctx); err != nil {
			done <- err
		}
		close(done)
	}()
	go s.follow(ctx)
	return done, nil
}

// follow refreshes the server list until ctx ends; credentials exist only
// after the join, so it waits for the kubeconfig to be set.
func (s *serverBalancer) follow(ctx context.Context) {
	var client kubernetes.Interface
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
		if client == nil && s.kubeconfig != "" {
			var err error
			if client, err = kubeclient.New(s.kubeconfig); err != nil {
				logrus.Warnf("load balancer: client for server discovery: %v", err)
				continue
			}
		}
		if client == nil {
			continue
		}
		servers, err := apiServers(ctx, client)
		if err != nil {
			logrus.Debugf("load balancer: list apiservers: %v", err)
			continue
		}
		s.lb.SetServers(append(servers, s.joined))
	}
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
