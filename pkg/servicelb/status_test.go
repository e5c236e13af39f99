package servicelb

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSameIngress(t *testing.T) {
	vip, proxy := corev1.LoadBalancerIPModeVIP, corev1.LoadBalancerIPModeProxy
	desired := []corev1.LoadBalancerIngress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}
	for _, tc := range []struct {
		name    string
		current []corev1.LoadBalancerIngress
		desired []corev1.LoadBalancerIngress
		same    bool
	}{
		{"both empty", nil, nil, true},
		{"empty and non-nil empty", []corev1.LoadBalancerIngress{}, nil, true},
		{"equal", []corev1.LoadBalancerIngress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}, desired, true},
		// What the API server stores for what was written.
		{"defaulted VIP mode", []corev1.LoadBalancerIngress{{IP: "10.0.0.1", IPMode: &vip}, {IP: "10.0.0.2", IPMode: &vip}}, desired, true},
		{"proxy mode", []corev1.LoadBalancerIngress{{IP: "10.0.0.1", IPMode: &proxy}, {IP: "10.0.0.2"}}, desired, false},
		{"other order", []corev1.LoadBalancerIngress{{IP: "10.0.0.2"}, {IP: "10.0.0.1"}}, desired, false},
		{"hostname", []corev1.LoadBalancerIngress{{IP: "10.0.0.1", Hostname: "lb.example"}, {IP: "10.0.0.2"}}, desired, false},
		{"ports", []corev1.LoadBalancerIngress{{IP: "10.0.0.1", Ports: []corev1.PortStatus{{Port: 80}}}, {IP: "10.0.0.2"}}, desired, false},
		{"one missing", []corev1.LoadBalancerIngress{{IP: "10.0.0.1"}}, desired, false},
		{"to be cleared", []corev1.LoadBalancerIngress{{IP: "10.0.0.1"}}, nil, false},
	} {
		if got := sameIngress(tc.current, tc.desired); got != tc.same {
			t.Errorf("%s: sameIngress = %v, want %v", tc.name, got, tc.same)
		}
	}
}

func TestSlimDown(t *testing.T) {
	n := node("a", true, nil, "10.0.0.1")
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"pause"}}}
	out, err := slimDown(n)
	if err != nil || out != n || n.ManagedFields != nil || n.Status.Images != nil || len(n.Status.Addresses) == 0 {
		t.Fatalf("slimDown(node) = %v, %v; managedFields %v, images %v", out, err, n.ManagedFields, n.Status.Images)
	}
	// Tombstones and anything else without metadata pass unchanged.
	if out, err := slimDown("tombstone"); err != nil || out != "tombstone" {
		t.Fatalf("slimDown(string) = %v, %v", out, err)
	}
}
