package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// resolveNodeName returns the configured node name, or the hostname,
// lowercased as Kubernetes requires.
func resolveNodeName(configured string) (string, error) {
	if configured != "" {
		return strings.ToLower(configured), nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read hostname: %w; pass --node-name", err)
	}
	return strings.ToLower(host), nil
}

// resolveNodeIPs returns the configured addresses, or the address of the
// interface holding the default route (read from the routing table; nothing
// is sent). A machine with no route at all, a laptop offline, still gets a
// working loopback cluster.
func resolveNodeIPs(configured []netip.Addr) []netip.Addr {
	if len(configured) > 0 {
		return configured
	}
	ip, err := utilnet.ChooseHostInterface()
	if err == nil {
		if addr, ok := netip.AddrFromSlice(ip); ok {
			return []netip.Addr{addr.Unmap()}
		}
	}
	logrus.Warnf("no default route to pick the node IP from (%v); using 127.0.0.1, pass --node-ip to choose", err)
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
}
