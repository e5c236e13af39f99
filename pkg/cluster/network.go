package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Each cluster gets one /24 of subnetBase; the bridge has .1, the nodes
// .2 and up.
const (
	subnetBase   = "10.100"
	subnetBits   = 24
	maxNodes     = 250
	nodeIface    = "eth0" // a node's end of its veth, in its namespace
	netnsDir     = "/run/netns"
	ruleComment  = "skiff cluster "
	bridgePrefix = "skc"
)

// runIP runs ip with args.
func runIP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// pickSubnet finds a /24 of subnetBase that no other cluster uses and that
// overlaps none of the host's addresses and routes.
func pickSubnet(others []*Cluster) (subnet *net.IPNet, index int, err error) {
	taken := map[string]bool{}
	for _, o := range others {
		taken[o.Subnet] = true
	}
	hostNets, err := hostNetworks()
	if err != nil {
		return nil, 0, err
	}
	for i := 1; i < 255; i++ {
		_, candidate, _ := net.ParseCIDR(fmt.Sprintf("%s.%d.0/%d", subnetBase, i, subnetBits))
		if taken[candidate.String()] || linkExists(bridgeName(i)) {
			continue
		}
		clash := false
		for _, h := range hostNets {
			if h.Contains(candidate.IP) || candidate.Contains(h.IP) {
				clash = true
				break
			}
		}
		if !clash {
			return candidate, i, nil
		}
	}
	return nil, 0, fmt.Errorf("every /24 of %s.0.0/16 is used by this host's routes or other clusters; delete a cluster (skiff cluster list) first", subnetBase)
}

func bridgeName(index int) string { return fmt.Sprintf("%s%d", bridgePrefix, index) }

// hostNetworks are the host's IPv4 networks: its interfaces' and its main
// routing table's, the default route aside.
func hostNetworks() ([]*net.IPNet, error) {
	var out []*net.IPNet
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			out = append(out, n)
		}
	}
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read the host's routes: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		dst, err1 := hex.DecodeString(fields[1])
		mask, err2 := hex.DecodeString(fields[7])
		if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
			continue
		}
		// The file holds them in the host's (little-endian) byte order.
		d := make(net.IP, 4)
		m := make(net.IPMask, 4)
		binary.BigEndian.PutUint32(d, binary.LittleEndian.Uint32(dst))
		binary.BigEndian.PutUint32(m, binary.LittleEndian.Uint32(mask))
		if ones, _ := m.Size(); ones == 0 {
			continue
		}
		out = append(out, &net.IPNet{IP: d, Mask: m})
	}
	return out, sc.Err()
}

// nodeIP is the address of the i-th node (from 0) of the subnet.
func nodeIP(subnet *net.IPNet, i int) string {
	ip := subnet.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], byte(i+2)).String()
}

// setUpBridge creates the cluster's bridge and its host rules, unless
// they exist.
func (c *Cluster) setUpBridge() error {
	if !linkExists(c.Bridge) {
		if err := runIP("link", "add", c.Bridge, "type", "bridge"); err != nil {
			return fmt.Errorf("create the bridge of cluster %s: %w", c.Name, err)
		}
		if err := runIP("addr", "add", fmt.Sprintf("%s/%d", c.Gateway, subnetBits), "dev", c.Bridge); err != nil {
			return fmt.Errorf("address the bridge of cluster %s: %w", c.Name, err)
		}
	}
	if err := runIP("link", "set", c.Bridge, "up"); err != nil {
		return err
	}
	return c.addRules()
}

// setUpNodeNet creates the node's network namespace and its veth on the
// bridge, unless they exist (after a reboot only the state file is left).
func (c *Cluster) setUpNodeNet(n *Node) error {
	if netnsExists(n.Netns) && linkExists(n.Veth) {
		return nil
	}
	if netnsExists(n.Netns) {
		if err := runIP("netns", "delete", n.Netns); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"netns", "add", n.Netns},
		{"link", "add", n.Veth, "type", "veth", "peer", "name", nodeIface, "netns", n.Netns},
		{"link", "set", n.Veth, "master", c.Bridge},
		{"link", "set", n.Veth, "up"},
		{"-n", n.Netns, "link", "set", "lo", "up"},
		{"-n", n.Netns, "addr", "add", fmt.Sprintf("%s/%d", n.IP, subnetBits), "dev", nodeIface},
		{"-n", n.Netns, "link", "set", nodeIface, "up"},
		{"-n", n.Netns, "route", "add", "default", "via", c.Gateway},
	}
	for _, args := range steps {
		if err := runIP(args...); err != nil {
			return fmt.Errorf("set up the network of node %s: %w", n.Name, err)
		}
	}
	return nil
}

// removeNetwork deletes the nodes' namespaces (their links and rules go
// with them once no process is left inside), the bridge and the host
// rules, and waits for the kernel to drop the veths.
func (c *Cluster) removeNetwork() error {
	var errs []error
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if netnsExists(n.Netns) {
			if err := runIP("netns", "delete", n.Netns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := c.removeRules(); err != nil {
		errs = append(errs, err)
	}
	if linkExists(c.Bridge) {
		if err := runIP("link", "delete", c.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	// A namespace is destroyed asynchronously after its last reference.
	for i := range c.Nodes {
		n := &c.Nodes[i]
		deadline := time.Now().Add(30 * time.Second)
		for linkExists(n.Veth) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if linkExists(n.Veth) {
			if err := runIP("link", "delete", n.Veth); err != nil {
				errs = append(errs, fmt.Errorf("the veth %s outlived the namespace %s: %w", n.Veth, n.Netns, err))
			}
		}
	}
	return errors.Join(errs...)
}

// rule is one iptables rule of the cluster's.
type rule struct {
	table, chain string
	spec         []string
}

// rules are what the host needs for the cluster: traffic between its
// nodes and out of the machine passes the host's FORWARD chain (where
// br_netfilter sends bridged packets too, and whose policy may be DROP),
// the nodes reach other networks masqueraded as the host, and no node
// reaches another cluster's bridge.
func (c *Cluster) rules() []rule {
	comment := []string{"-m", "comment", "--comment", ruleComment + c.Name}
	with := func(spec ...string) []string { return append(spec, comment...) }
	return []rule{
		{"filter", "FORWARD", with("-i", c.Bridge, "-o", c.Bridge, "-j", "ACCEPT")},
		{"filter", "FORWARD", with("-i", c.Bridge, "-o", bridgePrefix+"+", "-j", "DROP")},
		{"filter", "FORWARD", with("-i", c.Bridge, "-j", "ACCEPT")},
		{"filter", "FORWARD", with("-o", c.Bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")},
		{"nat", "POSTROUTING", with("-s", c.Subnet, "!", "-o", c.Bridge, "-j", "MASQUERADE")},
	}
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w", "5"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// addRules inserts the rules that are missing at the top of their chains,
// in order.
func (c *Cluster) addRules() error {
	pos := map[string]int{}
	for _, r := range c.rules() {
		key := r.table + "/" + r.chain
		pos[key]++
		if iptables(append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...) == nil {
			continue
		}
		if err := iptables(append([]string{"-t", r.table, "-I", r.chain, fmt.Sprint(pos[key])}, r.spec...)...); err != nil {
			return fmt.Errorf("add the host rules of cluster %s: %w", c.Name, err)
		}
	}
	return nil
}

func (c *Cluster) removeRules() error {
	var errs []error
	for _, r := range c.rules() {
		for iptables(append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...) == nil {
			if err := iptables(append([]string{"-t", r.table, "-D", r.chain}, r.spec...)...); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}
