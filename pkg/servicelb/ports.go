package servicelb

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// ReservedPort is a node port that something other than a LoadBalancer
// Service already listens on. kube-proxy's rules would capture that
// component's traffic, so no Service may have it.
type ReservedPort struct {
	Port     int32
	Protocol corev1.Protocol
	// Reason names what holds the port; it is quoted to users whose
	// Service is refused the port.
	Reason string
}

func (r ReservedPort) key() portKey { return portKey{port: r.Port, protocol: r.Protocol} }

// portKey is what two Services cannot share: kube-proxy matches load
// balancer traffic on destination address, port and protocol, and every
// Service served here gets the same node addresses.
type portKey struct {
	port     int32
	protocol corev1.Protocol
}

func (k portKey) String() string { return fmt.Sprintf("%d/%s", k.port, k.protocol) }

// servicePorts lists the distinct ports of a Service in spec order. An
// empty protocol is TCP, the API's default.
func servicePorts(svc *corev1.Service) []portKey {
	var keys []portKey
	seen := map[portKey]bool{}
	for _, p := range svc.Spec.Ports {
		protocol := p.Protocol
		if protocol == "" {
			protocol = corev1.ProtocolTCP
		}
		key := portKey{port: p.Port, protocol: protocol}
		if !seen[key] {
			seen[key] = true
			keys = append(keys, key)
		}
	}
	return keys
}
