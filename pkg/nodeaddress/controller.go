package nodeaddress

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
	nodecontroller "k8s.io/cloud-provider/controllers/node"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// Controller is the server component that runs upstream's cloud node
// controller over the addresses the nodes publish: it initialises each new
// Node (addresses, spec.providerID, and the removal of the uninitialized
// taint) and re-applies the published addresses every Every.
type Controller struct {
	Kubeconfig string
	// Every is how often every Node's addresses are compared with what it
	// published; default 10s, the kubelet's own status period. Reading
	// annotations from the informer's cache costs nothing, and a changed
	// flag should show within seconds of the node's restart.
	Every time.Duration
}

func (c *Controller) Name() string { return "node-address-controller" }

func (c *Controller) Start(ctx context.Context) (<-chan error, error) {
	cs, err := kubeclient.New(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	every := c.Every
	if every == 0 {
		every = 10 * time.Second
	}
	factory := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	cnc, err := nodecontroller.NewCloudNodeController(factory.Core().V1().Nodes(), cs, provider{}, every, 1, 1)
	if err != nil {
		return nil, fmt.Errorf("node address controller: %w", err)
	}
	factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() {
		defer close(done)
		cnc.RunWithContext(ctx, controllersmetrics.NewControllerManagerMetrics("skiff"))
		factory.Shutdown()
		done <- nil
	}()
	return done, nil
}

// provider is the cloud provider the controller asks for a Node's
// metadata: what the node published in its annotations. It implements
// only InstancesV2, all the cloud node controller needs.
type provider struct{}

var _ cloudprovider.Interface = provider{}

func (provider) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (provider) LoadBalancer() (cloudprovider.LoadBalancer, bool)                  { return nil, false }
func (provider) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (p provider) InstancesV2() (cloudprovider.InstancesV2, bool)                  { return p, true }
func (provider) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (provider) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (provider) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (provider) ProviderName() string                                              { return ProviderName }
func (provider) HasClusterID() bool                                                { return false }

// Every Node is a machine that exists and runs: there is no cloud to ask.
func (provider) InstanceExists(context.Context, *corev1.Node) (bool, error)   { return true, nil }
func (provider) InstanceShutdown(context.Context, *corev1.Node) (bool, error) { return false, nil }

func (provider) InstanceMetadata(_ context.Context, node *corev1.Node) (*cloudprovider.InstanceMetadata, error) {
	return instanceMetadata(node)
}

func instanceMetadata(node *corev1.Node) (*cloudprovider.InstanceMetadata, error) {
	meta := &cloudprovider.InstanceMetadata{ProviderID: ProviderName + "://" + node.Name}
	a, ok := FromNode(node)
	switch {
	case ok:
		meta.NodeAddresses = a.NodeAddresses()
	case uninitialized(node):
		// The controller tries again, and at once when the annotations
		// arrive (an update of the Node).
		return nil, fmt.Errorf("node %s has not published its addresses yet", node.Name)
	default:
		// A node of an older skiff, whose kubelet keeps its own addresses:
		// leave them as they are.
		meta.NodeAddresses = node.Status.Addresses
	}
	return meta, nil
}

func uninitialized(node *corev1.Node) bool {
	for _, t := range node.Spec.Taints {
		if t.Key == cloudproviderapi.TaintExternalCloudProvider {
			return true
		}
	}
	return false
}
