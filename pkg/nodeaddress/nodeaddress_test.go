package nodeaddress

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudproviderapi "k8s.io/cloud-provider/api"
)

func nodeWith(annotations map[string]*string, taints ...corev1.Taint) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{}}}
	for k, v := range annotations {
		if v != nil {
			n.Annotations[k] = *v
		}
	}
	n.Spec.Taints = taints
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}, {Type: corev1.NodeHostName, Address: "n1"}}
	return n
}

var uninitializedTaint = corev1.Taint{Key: cloudproviderapi.TaintExternalCloudProvider, Value: "true", Effect: corev1.TaintEffectNoSchedule}

func TestAnnotationsRoundTrip(t *testing.T) {
	a := Addresses{
		InternalIPs: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")},
		ExternalIPs: []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8::10")},
		InternalDNS: []string{"n1.lan"},
		ExternalDNS: []string{"n1.example.com", "www.example.com"},
	}
	ann := a.Annotations()
	if got := *ann[AnnotationExternalIPs]; got != "203.0.113.10,2001:db8::10" {
		t.Errorf("external-ip annotation %q", got)
	}
	got, ok := FromNode(nodeWith(ann))
	if !ok || !reflect.DeepEqual(got, a) {
		t.Fatalf("FromNode = %+v %v, want %+v", got, ok, a)
	}
	want := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.2"},
		{Type: corev1.NodeInternalIP, Address: "fd00::2"},
		{Type: corev1.NodeExternalIP, Address: "203.0.113.10"},
		{Type: corev1.NodeExternalIP, Address: "2001:db8::10"},
		{Type: corev1.NodeInternalDNS, Address: "n1.lan"},
		{Type: corev1.NodeExternalDNS, Address: "n1.example.com"},
		{Type: corev1.NodeExternalDNS, Address: "www.example.com"},
	}
	if got := a.NodeAddresses(); !reflect.DeepEqual(got, want) {
		t.Errorf("NodeAddresses = %v\nwant %v", got, want)
	}
}

func TestDroppedFlagRemovesAnnotation(t *testing.T) {
	// Published with an external IP, then restarted without it.
	before := Addresses{InternalIPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, ExternalIPs: []netip.Addr{netip.MustParseAddr("203.0.113.10")}}
	node := nodeWith(before.Annotations())
	after := Addresses{InternalIPs: before.InternalIPs}
	want := after.Annotations()
	if v, ok := want[AnnotationExternalIPs]; !ok || v != nil {
		t.Fatalf("the patch does not remove the external-ip annotation: %v", want)
	}
	if annotated(node, want) {
		t.Error("a node with a stale external-ip annotation counts as up to date")
	}
	if !annotated(nodeWith(want), want) {
		t.Error("a node with exactly the wanted annotations counts as stale")
	}
}

func TestInstanceMetadata(t *testing.T) {
	published := Addresses{InternalIPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, ExternalIPs: []netip.Addr{netip.MustParseAddr("203.0.113.10")}}
	meta, err := instanceMetadata(nodeWith(published.Annotations(), uninitializedTaint))
	if err != nil {
		t.Fatal(err)
	}
	if meta.ProviderID != "skiff://n1" || !reflect.DeepEqual(meta.NodeAddresses, published.NodeAddresses()) {
		t.Errorf("metadata %+v", meta)
	}

	// A new node that has not published yet waits for its agent.
	if _, err := instanceMetadata(nodeWith(nil, uninitializedTaint)); err == nil {
		t.Error("an unpublished new node was initialised")
	}

	// A node of an older skiff keeps the kubelet's addresses.
	old := nodeWith(nil)
	meta, err = instanceMetadata(old)
	if err != nil || !reflect.DeepEqual(meta.NodeAddresses, old.Status.Addresses) {
		t.Errorf("older node: %+v, %v", meta, err)
	}
}
