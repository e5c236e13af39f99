package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var addonsResource = schema.GroupVersionResource{Group: "skiff.io", Version: "v1", Resource: "addons"}

type clients struct {
	kube    kubernetes.Interface
	dynamic dynamic.Interface
}

func clientsFor(kubeconfig []byte) (*clients, error) {
	rc, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 10 * time.Second
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &clients{kube: kube, dynamic: dyn}, nil
}

// answers: the apiserver of kubeconfig is ready.
func answers(ctx context.Context, kubeconfig []byte) bool {
	cl, err := clientsFor(kubeconfig)
	if err != nil {
		return false
	}
	body, err := cl.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil && string(body) == "ok"
}

// waitNodesReady waits until the nodes are registered and Ready.
func (c *Cluster) waitNodesReady(ctx context.Context, nodes []*Node, timeout time.Duration) error {
	return c.poll(ctx, timeout, func(cl *clients) error { return nodesReady(ctx, cl, nodes, time.Time{}) })
}

// waitReady waits until every node is Ready and every bundled addon is
// applied and available. After a start, the stored status of the started
// nodes and their pods still says what it said before the stop: only what
// they reported since counts.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration, since time.Time, started []*Node) error {
	since = since.Truncate(time.Second) // the API's times have seconds
	names := map[string]bool{}
	for _, n := range started {
		names[n.Name] = true
	}
	return c.poll(ctx, timeout, func(cl *clients) error {
		if err := nodesReady(ctx, cl, c.nodePointers(), time.Time{}); err != nil {
			return err
		}
		if err := nodesReady(ctx, cl, started, since); err != nil {
			return err
		}
		if err := addonsAvailable(ctx, cl); err != nil {
			return err
		}
		return systemPodsRestarted(ctx, cl, names, since)
	})
}

// poll runs check every second until it passes, a node's skiff exits or
// timeout passes; the error names what was last missing.
func (c *Cluster) poll(ctx context.Context, timeout time.Duration, check func(*clients) error) error {
	deadline := time.Now().Add(timeout)
	var cl *clients
	for {
		for _, n := range c.nodePointers() {
			if n.PID != 0 {
				if err := c.alive(n); err != nil {
					return err
				}
			}
		}
		var err error
		if cl == nil {
			var b []byte
			if b, err = c.renderKubeconfig(); err == nil {
				cl, err = clientsFor(b)
			}
		}
		if err == nil {
			if err = check(cl); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster %s not ready within %s: %w", c.Name, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func nodesReady(ctx context.Context, cl *clients, nodes []*Node, since time.Time) error {
	for _, n := range nodes {
		node, err := cl.kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		ready := false
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue && !cond.LastHeartbeatTime.Time.Before(since) {
				ready = true
			}
		}
		if !ready {
			return fmt.Errorf("node %s is not Ready", n.Name)
		}
	}
	return nil
}

// addonsAvailable: the deploy controller has applied every manifest, and
// the Deployments and DaemonSets of kube-system are available.
func addonsAvailable(ctx context.Context, cl *clients) error {
	addons, err := cl.dynamic.Resource(addonsResource).Namespace(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list addons: %w", err)
	}
	if len(addons.Items) == 0 {
		return errors.New("no addon applied yet")
	}
	for _, a := range addons.Items {
		state, _, _ := unstructured.NestedString(a.Object, "status", "state")
		if state != "Applied" && state != "Skipped" {
			msg, _, _ := unstructured.NestedString(a.Object, "status", "message")
			return fmt.Errorf("addon %s is %q %s", a.GetName(), state, msg)
		}
	}
	deployments, err := cl.kube.AppsV1().Deployments(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, d := range deployments.Items {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.AvailableReplicas < want {
			return fmt.Errorf("deployment %s: %d of %d replicas available", d.Name, d.Status.AvailableReplicas, want)
		}
	}
	daemonSets, err := cl.kube.AppsV1().DaemonSets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, d := range daemonSets.Items {
		if d.Status.NumberAvailable < d.Status.DesiredNumberScheduled {
			return fmt.Errorf("daemonset %s: %d of %d pods available", d.Name, d.Status.NumberAvailable, d.Status.DesiredNumberScheduled)
		}
	}
	return nil
}

// systemPodsRestarted: the containers of every kube-system pod on the
// named nodes started again since.
func systemPodsRestarted(ctx context.Context, cl *clients, nodes map[string]bool, since time.Time) error {
	if len(nodes) == 0 {
		return nil
	}
	pods, err := cl.kube.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if !nodes[p.Spec.NodeName] || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil || cs.State.Running.StartedAt.Time.Before(since) || !cs.Ready {
				return fmt.Errorf("pod %s: container %s has not started again yet", p.Name, cs.Name)
			}
		}
	}
	return nil
}
