package nodeaddress

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// Publish is the node component that keeps the node's configured
// addresses in its Node's annotations, with the kubelet's own credentials
// (the NodeRestriction admission lets a node annotate itself). It waits
// for the kubelet to register the Node, and checks again now and then, so
// a Node deleted and registered again gets them back.
type Publish struct {
	Kubeconfig string
	NodeName   string
	Addresses  Addresses
	// Every is how often the annotations are checked once published;
	// default 30s.
	Every time.Duration
}

func (p *Publish) Name() string { return "node-addresses" }

func (p *Publish) Start(ctx context.Context) (<-chan error, error) {
	cs, err := kubeclient.New(p.Kubeconfig)
	if err != nil {
		return nil, err
	}
	every := p.Every
	if every == 0 {
		every = 30 * time.Second
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		published := false
		for {
			err := p.publish(ctx, cs)
			wait := every
			switch {
			case err == nil:
				if !published {
					logrus.Infof("node %s: addresses published for the cluster's node controller", p.NodeName)
				}
				published = true
			case apierrors.IsNotFound(err):
				// The kubelet has not registered the Node yet.
				wait = time.Second
			default:
				if ctx.Err() == nil {
					logrus.Warnf("node %s: publish the configured addresses: %v; trying again", p.NodeName, err)
				}
				wait = 5 * time.Second
			}
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-time.After(wait):
			}
		}
	}()
	return done, nil
}

// publish patches the Node's annotations when they differ from the
// configured addresses.
func (p *Publish) publish(ctx context.Context, cs kubernetes.Interface) error {
	node, err := cs.CoreV1().Nodes().Get(ctx, p.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	want := p.Addresses.Annotations()
	if annotated(node, want) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want}})
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, p.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotate node %s: %w", p.NodeName, err)
	}
	return nil
}

// annotated reports whether node carries exactly the wanted annotations
// (nil: absent).
func annotated(node *corev1.Node, want map[string]*string) bool {
	for key, value := range want {
		have, ok := node.Annotations[key]
		if ok != (value != nil) || (ok && have != *value) {
			return false
		}
	}
	return true
}
