package supervisor

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// kubeletServingNames decides what a node's kubelet serving certificate
// may name: the node itself, localhost, and unicast addresses the node can
// own. It refuses the first name outside that, so a join token never buys
// a certificate for the apiserver, a Service, or another node.
//
// serviceCIDRs are the cluster's Service ranges; ownerOf returns the
// other node that already reports an address, "" if none. local says the
// request came over loopback, from the server's own host: a node there
// with no network (offline) has 127.0.0.1 as its address, which no other
// host can reach.
func kubeletServingNames(node string, dnsNames []string, ips []net.IP, serviceCIDRs []netip.Prefix, ownerOf func(net.IP) (string, error), local bool) ([]string, []net.IP, error) {
	names := []string{node}
	for _, name := range dnsNames {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		switch name {
		case node:
		case "localhost":
			names = append(names, name)
		default:
			return nil, nil, fmt.Errorf("refused kubelet serving certificate: it may name only the node %q and localhost, not %q", node, name)
		}
	}
	var out []net.IP
	for _, ip := range ips {
		if !(ip.IsGlobalUnicast() || local && ip.IsLoopback()) || ip.Equal(net.IPv4bcast) {
			return nil, nil, fmt.Errorf("refused kubelet serving certificate: %s is not a unicast address a node can have", ip)
		}
		addr, _ := netip.AddrFromSlice(ip)
		for _, cidr := range serviceCIDRs {
			if cidr.Contains(addr.Unmap()) {
				return nil, nil, fmt.Errorf("refused kubelet serving certificate: %s is inside the service CIDR %s, not a node address", ip, cidr)
			}
		}
		other, err := ownerOf(ip)
		if err != nil {
			return nil, nil, err
		}
		if other != "" {
			return nil, nil, fmt.Errorf("refused kubelet serving certificate: %s is an address of node %q, not of %q", ip, other, node)
		}
		out = append(out, ip)
	}
	return names, out, nil
}
