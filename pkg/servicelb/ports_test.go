package servicelb

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseReservedPort(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  ReservedPort
	}{
		{"6443/TCP=the Skiff API server", ReservedPort{6443, corev1.ProtocolTCP, "the Skiff API server"}},
		{"53/udp=cluster DNS, on the host", ReservedPort{53, corev1.ProtocolUDP, "cluster DNS, on the host"}},
		{"9/Sctp= x = y ", ReservedPort{9, corev1.ProtocolSCTP, "x = y"}},
		{"65535/TCP=top", ReservedPort{65535, corev1.ProtocolTCP, "top"}},
	} {
		got, err := ParseReservedPort(tc.value)
		if err != nil || got != tc.want {
			t.Errorf("ParseReservedPort(%q) = %+v, %v; want %+v", tc.value, got, err, tc.want)
		}
	}

	for _, tc := range []struct{ value, detail string }{
		{"", "no reason"},
		{"6443/TCP", "no reason"},
		{"6443/TCP=", "empty reason"},
		{"6443=api", "no protocol"},
		{"api/TCP=api", `port "api"`},
		{"0/TCP=zero", `port "0"`},
		{"65536/TCP=big", `port "65536"`},
		{"-1/TCP=neg", `port "-1"`},
		{"80/HTTP=web", `protocol "HTTP" is not TCP, UDP or SCTP`},
		{"80/=web", `protocol ""`},
	} {
		_, err := ParseReservedPort(tc.value)
		if err == nil {
			t.Errorf("ParseReservedPort(%q) succeeded, want an error", tc.value)
			continue
		}
		for _, want := range []string{`"` + tc.value + `"`, tc.detail, "PORT/PROTO=reason"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseReservedPort(%q) error %q does not contain %q", tc.value, err, want)
			}
		}
	}
}

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
