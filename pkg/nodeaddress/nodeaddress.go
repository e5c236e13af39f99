// Package nodeaddress puts the addresses a node is configured with
// (--node-ip, --node-external-ip, --node-internal-dns, --node-external-dns)
// into its Node's status.addresses, and keeps them there.
//
// Without a cloud provider the kubelet owns status.addresses: every status
// update replaces the list with the node IP and the hostname, so anything
// else written there is removed within seconds. With --cloud-provider=external
// the kubelet fills the list only while it is empty and leaves it to a
// cloud controller after that, which is how k3s adds ExternalIP and the DNS
// types. Skiff does the same with upstream pieces: each agent publishes its
// addresses as annotations on its own Node (Publish), and the servers run
// upstream's cloud node controller (k8s.io/cloud-provider) over a provider
// that reads those annotations (Controller). The controller removes the
// node.cloudprovider.kubernetes.io/uninitialized taint the kubelet
// registers with, and re-applies the annotations every few seconds, so a
// node restarted with other flags shows its new addresses.
package nodeaddress

import (
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The annotations an agent publishes its configured addresses in, each a
// comma-separated list. InternalIPs is always set by a current agent; its
// absence means the node has not published yet (or runs an older skiff).
const (
	AnnotationInternalIPs = "skiff.io/internal-ip"
	AnnotationExternalIPs = "skiff.io/external-ip"
	AnnotationInternalDNS = "skiff.io/internal-dns"
	AnnotationExternalDNS = "skiff.io/external-dns"
)

// ProviderName names the provider in the Nodes' spec.providerID
// ("skiff://NODE"), as k3s's does with k3s://.
const ProviderName = "skiff"

// Addresses are what one node is configured with.
type Addresses struct {
	InternalIPs []netip.Addr
	ExternalIPs []netip.Addr
	InternalDNS []string
	ExternalDNS []string
}

// Annotations are the annotation values that publish a: a nil value
// removes an annotation a node published before (a JSON merge patch's
// null), so dropping a flag drops the address.
func (a Addresses) Annotations() map[string]*string {
	list := func(values []string) *string {
		if len(values) == 0 {
			return nil
		}
		s := strings.Join(values, ",")
		return &s
	}
	return map[string]*string{
		AnnotationInternalIPs: list(addrStrings(a.InternalIPs)),
		AnnotationExternalIPs: list(addrStrings(a.ExternalIPs)),
		AnnotationInternalDNS: list(a.InternalDNS),
		AnnotationExternalDNS: list(a.ExternalDNS),
	}
}

func addrStrings(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// FromNode reads the addresses a node published; ok is false when it has
// published none.
func FromNode(node *corev1.Node) (a Addresses, ok bool) {
	ann := node.Annotations
	if _, ok := ann[AnnotationInternalIPs]; !ok {
		return Addresses{}, false
	}
	ips := func(key string) []netip.Addr {
		var out []netip.Addr
		for _, s := range splitList(ann[key]) {
			if addr, err := netip.ParseAddr(s); err == nil {
				out = append(out, addr)
			}
		}
		return out
	}
	return Addresses{
		InternalIPs: ips(AnnotationInternalIPs),
		ExternalIPs: ips(AnnotationExternalIPs),
		InternalDNS: splitList(ann[AnnotationInternalDNS]),
		ExternalDNS: splitList(ann[AnnotationExternalDNS]),
	}, true
}

// NodeAddresses is a's status.addresses, in the order the apiserver's
// --kubelet-preferred-address-types looks at them, then the DNS names; the
// Hostname address is left to the kubelet's (the controller keeps it).
func (a Addresses) NodeAddresses() []corev1.NodeAddress {
	var out []corev1.NodeAddress
	add := func(typ corev1.NodeAddressType, values []string) {
		for _, v := range values {
			out = append(out, corev1.NodeAddress{Type: typ, Address: v})
		}
	}
	add(corev1.NodeInternalIP, addrStrings(a.InternalIPs))
	add(corev1.NodeExternalIP, addrStrings(a.ExternalIPs))
	add(corev1.NodeInternalDNS, a.InternalDNS)
	add(corev1.NodeExternalDNS, a.ExternalDNS)
	return out
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
