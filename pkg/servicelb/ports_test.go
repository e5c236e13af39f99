package servicelb

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestServicePortsDefaultsToTCPAndDeduplicates(t *testing.T) {
	svc := lbService("default", "dns", 0,
		corev1.ServicePort{Port: 53}, udp(53), tcp(53), tcp(80))
	got := servicePorts(svc)
	want := []portKey{{53, corev1.ProtocolTCP}, {53, corev1.ProtocolUDP}, {80, corev1.ProtocolTCP}}
	if len(got) != len(want) {
		t.Fatalf("ports = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ports = %v, want %v", got, want)
		}
	}
}
