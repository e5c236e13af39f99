package servicelb

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// reservedPortForm is quoted in every parse error, so that a bad flag value
// tells its author what a good one looks like.
const reservedPortForm = `want PORT/PROTO=reason, e.g. "6443/TCP=the Skiff API server"`

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

// ParseReservedPort reads "PORT/PROTO=reason", PROTO being TCP, UDP or SCTP
// in any case.
func ParseReservedPort(value string) (ReservedPort, error) {
	spec, reason, found := strings.Cut(value, "=")
	if !found {
		return ReservedPort{}, fmt.Errorf("%q: no reason after \"=\" (%s)", value, reservedPortForm)
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return ReservedPort{}, fmt.Errorf("%q: empty reason (%s)", value, reservedPortForm)
	}
	portText, protoText, found := strings.Cut(strings.TrimSpace(spec), "/")
	if !found {
		return ReservedPort{}, fmt.Errorf("%q: no protocol after the port (%s)", value, reservedPortForm)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return ReservedPort{}, fmt.Errorf("%q: port %q is not a number from 1 to 65535 (%s)", value, portText, reservedPortForm)
	}
	protocol := corev1.Protocol(strings.ToUpper(protoText))
	switch protocol {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return ReservedPort{}, fmt.Errorf("%q: protocol %q is not TCP, UDP or SCTP (%s)", value, protoText, reservedPortForm)
	}
	return ReservedPort{Port: int32(port), Protocol: protocol, Reason: reason}, nil
}

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
