package flannel

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// CNI names shared with the CNI plugins and containerd.
const (
	// CNIConfFile is the conflist the container runtime loads; "10-" keeps it
	// ahead of most other configurations a user may drop next to it.
	CNIConfFile = "10-skiff.conflist"
	// CNINetworkName names the network in the conflist; host-local keeps its
	// reservations under <dataDir>/<name>.
	CNINetworkName = "skiff"
	// BridgeName is the Linux bridge the bridge plugin attaches pods to.
	BridgeName = "cni0"
	cniVersion = "1.0.0"
)

// cniParams is everything the conflist depends on, so that it can be built
// and tested without a cluster.
type cniParams struct {
	// Subnets are this node's pod subnets from its lease: one IPv4 and/or
	// one IPv6.
	Subnets []*net.IPNet
	// MTU of the pod interfaces: the backend's MTU, which already accounts
	// for the encapsulation overhead.
	MTU int
	// IPAMDataDir is host-local's state directory; it must survive restarts
	// so that running pods keep their addresses.
	IPAMDataDir string
}

type cniConfList struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type bridgePlugin struct {
	Type         string    `json:"type"`
	Bridge       string    `json:"bridge"`
	IsGateway    bool      `json:"isGateway"`
	IPMasq       bool      `json:"ipMasq"`
	HairpinMode  bool      `json:"hairpinMode"`
	ForceAddress bool      `json:"forceAddress"`
	MTU          int       `json:"mtu"`
	IPAM         hostLocal `json:"ipam"`
}

type hostLocal struct {
	Type    string         `json:"type"`
	DataDir string         `json:"dataDir"`
	Ranges  [][]ipamRange  `json:"ranges"`
	Routes  []ipamRouteDst `json:"routes"`
}

type ipamRange struct {
	Subnet string `json:"subnet"`
}

type ipamRouteDst struct {
	Dst string `json:"dst"`
}

type portmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
	SNAT         bool            `json:"snat"`
}

type bandwidthPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

// buildConflist renders the node's CNI configuration. It only uses the
// plugins skiff bundles (bridge, host-local, portmap, bandwidth): there is no
// flannel CNI plugin, so the bridge is configured directly from the lease.
func buildConflist(p cniParams) ([]byte, error) {
	if len(p.Subnets) == 0 {
		return nil, errors.New("no pod subnet")
	}
	if p.MTU <= 0 {
		return nil, fmt.Errorf("invalid MTU %d", p.MTU)
	}
	if p.IPAMDataDir == "" {
		return nil, errors.New("no IPAM data directory")
	}
	ipam := hostLocal{Type: "host-local", DataDir: p.IPAMDataDir}
	var seen4, seen6 bool
	for _, sn := range p.Subnets {
		if sn == nil {
			return nil, errors.New("nil pod subnet")
		}
		v4 := sn.IP.To4() != nil
		if (v4 && seen4) || (!v4 && seen6) {
			return nil, fmt.Errorf("more than one pod subnet of the family of %s", sn)
		}
		// Routes follow the families present: a default route per family,
		// through the bridge's gateway address that host-local hands out.
		if v4 {
			seen4 = true
			ipam.Routes = append(ipam.Routes, ipamRouteDst{Dst: "0.0.0.0/0"})
		} else {
			seen6 = true
			ipam.Routes = append(ipam.Routes, ipamRouteDst{Dst: "::/0"})
		}
		ipam.Ranges = append(ipam.Ranges, []ipamRange{{Subnet: sn.String()}})
	}
	list := cniConfList{
		CNIVersion: cniVersion,
		Name:       CNINetworkName,
		Plugins: []any{
			bridgePlugin{
				Type:      "bridge",
				Bridge:    BridgeName,
				IsGateway: true,
				// flannel's traffic manager masquerades pod traffic leaving
				// the cluster CIDR; a second rule per pod from the plugin
				// would only add churn.
				IPMasq:      false,
				HairpinMode: true,
				// The node's subnet can change (node re-registered): let the
				// plugin replace the bridge's old gateway address.
				ForceAddress: true,
				MTU:          p.MTU,
				IPAM:         ipam,
			},
			portmapPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}, SNAT: true},
			bandwidthPlugin{Type: "bandwidth", Capabilities: map[string]bool{"bandwidth": true}},
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// writeFileAtomic replaces path with data so that a reader (containerd
// watches the CNI directory) never sees a partial file. An unchanged file is
// left alone to spare the runtime a needless reload.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	_, err := fileutil.WriteIfChanged(path, data, mode)
	return err
}
