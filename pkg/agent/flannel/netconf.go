package flannel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/flannel-io/flannel/pkg/ip"
)

// Backend names accepted in Config.Backend.
const (
	BackendVXLAN  = "vxlan"
	BackendHostGW = "host-gw"
	BackendNone   = "none"
)

// Backends lists the accepted Config.Backend values, default first.
var Backends = []string{BackendVXLAN, BackendHostGW, BackendNone}

// ValidateBackend returns the canonical backend name for b ("" means the
// default, vxlan), or an error naming the allowed values.
func ValidateBackend(b string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(b)) {
	case "", BackendVXLAN:
		return BackendVXLAN, nil
	case BackendHostGW:
		return BackendHostGW, nil
	case BackendNone:
		return BackendNone, nil
	}
	return "", fmt.Errorf("unknown flannel backend %q: use one of %s", b, strings.Join(Backends, ", "))
}

// clusterNets is the cluster CIDR split by family; either may be nil.
type clusterNets struct {
	v4, v6 *net.IPNet
}

// parseClusterCIDR accepts "v4", "v6" or "v4,v6" (in either order), the
// same forms the server's --cluster-cidr takes.
func parseClusterCIDR(s string) (clusterNets, error) {
	var n clusterNets
	if strings.TrimSpace(s) == "" {
		return n, errors.New("no cluster CIDR")
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		_, cidr, err := net.ParseCIDR(part)
		if err != nil {
			return n, fmt.Errorf("cluster CIDR %q: %w", s, err)
		}
		if cidr.IP.To4() != nil {
			if n.v4 != nil {
				return n, fmt.Errorf("cluster CIDR %q has more than one IPv4 range", s)
			}
			n.v4 = cidr
		} else {
			if n.v6 != nil {
				return n, fmt.Errorf("cluster CIDR %q has more than one IPv6 range", s)
			}
			n.v6 = cidr
		}
	}
	return n, nil
}

// netConf is the subset of flannel's net-conf.json skiff sets. The kube
// subnet manager reads it from a file, so it is written rather than passed.
type netConf struct {
	Network     string         `json:",omitempty"`
	IPv6Network string         `json:",omitempty"`
	EnableIPv4  bool           `json:"EnableIPv4"`
	EnableIPv6  bool           `json:"EnableIPv6"`
	Backend     netConfBackend `json:"Backend"`
}

type netConfBackend struct {
	Type string `json:"Type"`
}

func buildNetConf(nets clusterNets, backend string) ([]byte, error) {
	c := netConf{Backend: netConfBackend{Type: backend}}
	if nets.v4 != nil {
		c.EnableIPv4 = true
		c.Network = nets.v4.String()
	}
	if nets.v6 != nil {
		c.EnableIPv6 = true
		c.IPv6Network = nets.v6.String()
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// prevSubnets is what the last run wrote to subnet.env. flannel's traffic
// manager needs it to delete masquerade rules for a network or subnet that
// is no longer ours.
type prevSubnets struct {
	network, subnet         ip.IP4Net
	ipv6Network, ipv6Subnet ip.IP6Net
}

// readSubnetEnv parses subnet.env leniently, as flanneld does: a missing
// file or key leaves the zero (empty) value, which means "nothing to clean".
func readSubnetEnv(path string) prevSubnets {
	var p prevSubnets
	data, err := os.ReadFile(path)
	if err != nil {
		return p
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		_, cidr, err := net.ParseCIDR(strings.Trim(strings.TrimSpace(v), `"'`))
		if err != nil {
			continue
		}
		v4 := cidr.IP.To4() != nil
		switch {
		case k == "FLANNEL_NETWORK" && v4:
			p.network = ip.FromIPNet(cidr)
		case k == "FLANNEL_SUBNET" && v4:
			p.subnet = ip.FromIPNet(cidr)
		case k == "FLANNEL_IPV6_NETWORK" && !v4:
			p.ipv6Network = ip.FromIP6Net(cidr)
		case k == "FLANNEL_IPV6_SUBNET" && !v4:
			p.ipv6Subnet = ip.FromIP6Net(cidr)
		}
	}
	return p
}
