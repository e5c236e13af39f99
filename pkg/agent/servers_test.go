package agent

import (
	"slices"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestAPIServersAreTheReadyEndpointsInOneOrder(t *testing.T) {
	https, other := "https", "metrics"
	port, otherPort := int32(6443), int32(9000)
	ready, notReady := true, false
	eps := []*discoveryv1.EndpointSlice{
		{
			Ports: []discoveryv1.EndpointPort{{Name: &other, Port: &otherPort}, {Name: &https, Port: &port}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
				{Addresses: []string{"10.0.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
				{Addresses: []string{"10.0.0.1"}},
			},
		},
		// A slice without the https port names no apiserver.
		{Ports: []discoveryv1.EndpointPort{{Name: &other, Port: &otherPort}}, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.7"}}}},
		{Ports: []discoveryv1.EndpointPort{{Port: &port}}, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"fd00::2"}}}},
	}
	want := []string{"10.0.0.1:6443", "10.0.0.3:6443", "[fd00::2]:6443"}
	if got := apiServers(eps); !slices.Equal(got, want) {
		t.Fatalf("apiServers = %v, want %v", got, want)
	}
	// The informer's store lists in no fixed order; the balancer's list,
	// and its log line, must not change with it.
	slices.Reverse(eps)
	if got := apiServers(eps); !slices.Equal(got, want) {
		t.Fatalf("apiServers in another order = %v, want %v", got, want)
	}
}
