package dns

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
}

func TestTable(t *testing.T) {
	nodes := []*corev1.Node{
		node("worker",
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.2"},
			corev1.NodeAddress{Type: corev1.NodeHostName, Address: "worker"}),
		node("server",
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.1"},
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "fd00::1"},
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.1"},
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "10.0.0.1"}),
	}
	want := "10.0.0.1 server\n10.0.0.2 worker\n203.0.113.1 server\nfd00::1 server\n"
	if got := Table(nodes); got != want {
		t.Fatalf("Table = %q, want %q", got, want)
	}
	// Order of the input must not matter, or the ConfigMap would churn.
	nodes[0], nodes[1] = nodes[1], nodes[0]
	if got := Table(nodes); got != want {
		t.Fatalf("Table after reorder = %q", got)
	}
	if got := Table(nil); got != "" {
		t.Fatalf("Table(nil) = %q", got)
	}
}
