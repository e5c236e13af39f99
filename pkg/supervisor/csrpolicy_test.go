package supervisor

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestKubeletServingNames(t *testing.T) {
	services := []netip.Prefix{netip.MustParsePrefix("10.43.0.0/16"), netip.MustParsePrefix("fd00:43::/112")}
	owners := map[string]string{"192.0.2.20": "node-2"}
	ownerOf := func(ip net.IP) (string, error) { return owners[ip.String()], nil }
	ips := func(s ...string) []net.IP {
		var out []net.IP
		for _, a := range s {
			out = append(out, net.ParseIP(a))
		}
		return out
	}

	dns, got, err := kubeletServingNames("node-1", []string{"NODE-1", "localhost"}, ips("192.0.2.10", "2001:db8::10", "10.0.0.5"), services, ownerOf, false)
	if err != nil {
		t.Fatalf("the node's own names and addresses were refused: %v", err)
	}
	if !slices.Equal(dns, []string{"node-1", "localhost"}) || len(got) != 3 {
		t.Fatalf("signed %v %v", dns, got)
	}
	// The node name is always in the certificate, asked for or not.
	if dns, _, _ := kubeletServingNames("node-1", nil, nil, services, ownerOf, false); !slices.Equal(dns, []string{"node-1"}) {
		t.Fatalf("without names: %v", dns)
	}

	refused := map[string]struct {
		dns []string
		ips []net.IP
		// quote is what the error must name.
		quote string
	}{
		"the kubernetes Service":          {dns: []string{"kubernetes.default.svc"}, quote: `"kubernetes.default.svc"`},
		"the kubernetes Service, short":   {dns: []string{"kubernetes"}, quote: `"kubernetes"`},
		"another node's name":             {dns: []string{"node-2"}, quote: `"node-2"`},
		"a subdomain of the node":         {dns: []string{"x.node-1"}, quote: `"x.node-1"`},
		"a wildcard":                      {dns: []string{"*.example.com"}, quote: `"*.example.com"`},
		"an IPv4 Service address":         {ips: ips("10.43.0.1"), quote: "10.43.0.1 is inside the service CIDR 10.43.0.0/16"},
		"an IPv6 Service address":         {ips: ips("fd00:43::1"), quote: "fd00:43::1 is inside the service CIDR"},
		"loopback":                        {ips: ips("127.0.0.1"), quote: "127.0.0.1 is not a unicast address"},
		"IPv6 loopback":                   {ips: ips("::1"), quote: "::1 is not a unicast"},
		"unspecified":                     {ips: ips("0.0.0.0"), quote: "0.0.0.0"},
		"multicast":                       {ips: ips("224.0.0.1"), quote: "224.0.0.1"},
		"broadcast":                       {ips: ips("255.255.255.255"), quote: "255.255.255.255"},
		"link-local":                      {ips: ips("169.254.1.1"), quote: "169.254.1.1"},
		"another node's address":          {ips: ips("192.0.2.20"), quote: `192.0.2.20 is an address of node "node-2"`},
		"a good name before a bad one":    {dns: []string{"node-1", "evil"}, quote: `"evil"`},
		"a good address before a bad one": {ips: ips("192.0.2.10", "10.43.0.10"), quote: "10.43.0.10"},
	}
	for name, tc := range refused {
		_, _, err := kubeletServingNames("node-1", tc.dns, tc.ips, services, ownerOf, false)
		if err == nil || !strings.Contains(err.Error(), tc.quote) {
			t.Errorf("%s: error %v, want one naming %s", name, err, tc.quote)
		}
	}

	// The node's own address is not "another node's".
	owners["192.0.2.10"] = ""
	if _, _, err := kubeletServingNames("node-1", nil, ips("192.0.2.10"), services, ownerOf, false); err != nil {
		t.Errorf("own address refused: %v", err)
	}
	// On the server's own host a node without a network is 127.0.0.1.
	if _, got, err := kubeletServingNames("node-1", nil, ips("127.0.0.1", "::1"), services, ownerOf, true); err != nil || len(got) != 2 {
		t.Errorf("loopback from the server's host: %v %v", got, err)
	}
	if _, _, err := kubeletServingNames("node-1", nil, ips("10.43.0.1"), services, ownerOf, true); err == nil {
		t.Error("a Service address from the server's host was signed")
	}
	// A cache that is not ready is passed on, so the endpoint can say "retry".
	_, _, err = kubeletServingNames("node-1", nil, ips("192.0.2.10"), services, func(net.IP) (string, error) { return "", errCacheNotReady }, false)
	if !errors.Is(err, errCacheNotReady) {
		t.Errorf("cache error lost: %v", err)
	}
}
