package servicelb

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// eventSource is the component named in the controller's Events.
const eventSource = "skiff-servicelb"

// Component runs the controller inside the server, where it costs a few
// informers instead of a pod, its runtime and its shim on some node.
type Component struct {
	Kubeconfig string
	// Reserved are the node ports no LoadBalancer Service may take.
	Reserved []ReservedPort
	// NodeName is the Events' source host.
	NodeName string
}

func (c *Component) Name() string { return "servicelb" }

// Start returns at once; the controller runs in the background until ctx
// is cancelled.
func (c *Component) Start(ctx context.Context) (<-chan error, error) {
	client, err := kubeclient.New(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	events := record.NewBroadcaster(record.WithContext(ctx))
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: eventSource, Host: c.NodeName})
	controller, err := NewController(client, Options{Reserved: c.Reserved, Recorder: recorder})
	if err != nil {
		events.Shutdown()
		return nil, fmt.Errorf("create servicelb controller: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		defer events.Shutdown()
		if err := controller.Run(ctx); err != nil {
			done <- fmt.Errorf("servicelb controller: %w", err)
		}
	}()
	return done, nil
}
