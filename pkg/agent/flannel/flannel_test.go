package flannel

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/lease"
	"github.com/flannel-io/flannel/pkg/subnet"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// conflist mirrors the fields the CNI plugins read, to check the generated
// JSON by decoding it as they would.
type conflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []struct {
		Type         string          `json:"type"`
		Bridge       string          `json:"bridge"`
		IsGateway    *bool           `json:"isGateway"`
		IPMasq       *bool           `json:"ipMasq"`
		HairpinMode  *bool           `json:"hairpinMode"`
		ForceAddress *bool           `json:"forceAddress"`
		MTU          int             `json:"mtu"`
		SNAT         *bool           `json:"snat"`
		Capabilities map[string]bool `json:"capabilities"`
		IPAM         *struct {
			Type    string `json:"type"`
			DataDir string `json:"dataDir"`
			Ranges  [][]struct {
				Subnet string `json:"subnet"`
			} `json:"ranges"`
			Routes []struct {
				Dst string `json:"dst"`
			} `json:"routes"`
		} `json:"ipam"`
	} `json:"plugins"`
}

func decodeConflist(t *testing.T, data []byte) conflist {
	t.Helper()
	var c conflist
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("conflist is not valid JSON: %v\n%s", err, data)
	}
	return c
}

func TestBuildConflistIPv4(t *testing.T) {
	data, err := buildConflist(cniParams{
		Subnets:     []*net.IPNet{mustCIDR(t, "10.42.3.0/24")},
		MTU:         1450,
		IPAMDataDir: "/var/lib/skiff/agent/cni/networks",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := decodeConflist(t, data)
	if c.CNIVersion != "1.0.0" || c.Name != CNINetworkName {
		t.Errorf("cniVersion/name = %q/%q", c.CNIVersion, c.Name)
	}
	bundled := map[string]bool{"bridge": true, "host-local": true, "loopback": true, "portmap": true, "bandwidth": true, "firewall": true}
	var types []string
	for _, p := range c.Plugins {
		types = append(types, p.Type)
		if !bundled[p.Type] {
			t.Errorf("plugin %q is not bundled with skiff", p.Type)
		}
	}
	if got := strings.Join(types, ","); got != "bridge,portmap,bandwidth" {
		t.Fatalf("plugins = %s", got)
	}

	br := c.Plugins[0]
	if br.Bridge != "cni0" || br.MTU != 1450 {
		t.Errorf("bridge/mtu = %q/%d", br.Bridge, br.MTU)
	}
	for name, want := range map[string]struct {
		got  *bool
		want bool
	}{
		"isGateway": {br.IsGateway, true}, "ipMasq": {br.IPMasq, false},
		"hairpinMode": {br.HairpinMode, true}, "forceAddress": {br.ForceAddress, true},
	} {
		if want.got == nil || *want.got != want.want {
			t.Errorf("bridge %s = %v, want %v", name, want.got, want.want)
		}
	}
	if br.IPAM == nil || br.IPAM.Type != "host-local" {
		t.Fatalf("ipam = %+v", br.IPAM)
	}
	if br.IPAM.DataDir != "/var/lib/skiff/agent/cni/networks" {
		t.Errorf("dataDir = %q", br.IPAM.DataDir)
	}
	if len(br.IPAM.Ranges) != 1 || len(br.IPAM.Ranges[0]) != 1 || br.IPAM.Ranges[0][0].Subnet != "10.42.3.0/24" {
		t.Errorf("ranges = %+v", br.IPAM.Ranges)
	}
	if len(br.IPAM.Routes) != 1 || br.IPAM.Routes[0].Dst != "0.0.0.0/0" {
		t.Errorf("routes = %+v", br.IPAM.Routes)
	}

	pm := c.Plugins[1]
	if !pm.Capabilities["portMappings"] || pm.SNAT == nil || !*pm.SNAT {
		t.Errorf("portmap = %+v", pm)
	}
	if !c.Plugins[2].Capabilities["bandwidth"] {
		t.Errorf("bandwidth = %+v", c.Plugins[2])
	}
}

func TestBuildConflistDualStack(t *testing.T) {
	data, err := buildConflist(cniParams{
		Subnets:     []*net.IPNet{mustCIDR(t, "10.42.1.0/24"), mustCIDR(t, "fd00:42:0:1::/64")},
		MTU:         1500,
		IPAMDataDir: "/d",
	})
	if err != nil {
		t.Fatal(err)
	}
	ipam := decodeConflist(t, data).Plugins[0].IPAM
	if len(ipam.Ranges) != 2 || ipam.Ranges[0][0].Subnet != "10.42.1.0/24" || ipam.Ranges[1][0].Subnet != "fd00:42:0:1::/64" {
		t.Errorf("ranges = %+v", ipam.Ranges)
	}
	if len(ipam.Routes) != 2 || ipam.Routes[0].Dst != "0.0.0.0/0" || ipam.Routes[1].Dst != "::/0" {
		t.Errorf("routes = %+v", ipam.Routes)
	}
}

func TestBuildConflistErrors(t *testing.T) {
	sn := mustCIDR(t, "10.42.0.0/24")
	for name, p := range map[string]cniParams{
		"no subnet":  {MTU: 1450, IPAMDataDir: "/d"},
		"zero MTU":   {Subnets: []*net.IPNet{sn}, IPAMDataDir: "/d"},
		"no dataDir": {Subnets: []*net.IPNet{sn}, MTU: 1450},
		"two IPv4":   {Subnets: []*net.IPNet{sn, mustCIDR(t, "10.42.1.0/24")}, MTU: 1450, IPAMDataDir: "/d"},
		"nil subnet": {Subnets: []*net.IPNet{nil}, MTU: 1450, IPAMDataDir: "/d"},
	} {
		if _, err := buildConflist(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestValidateBackend(t *testing.T) {
	for in, want := range map[string]string{"": "vxlan", "vxlan": "vxlan", "VXLAN": "vxlan", "host-gw": "host-gw", "none": "none"} {
		got, err := ValidateBackend(in)
		if err != nil || got != want {
			t.Errorf("ValidateBackend(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"wireguard", "udp", "ipip", "hostgw"} {
		_, err := ValidateBackend(bad)
		if err == nil {
			t.Errorf("ValidateBackend(%q): no error", bad)
			continue
		}
		if !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "vxlan, host-gw, none") {
			t.Errorf("ValidateBackend(%q) error %q should name the value and the allowed ones", bad, err)
		}
	}
}

func TestStartUnknownBackend(t *testing.T) {
	f := &Flannel{Config{Backend: "wireguard"}}
	_, err := f.Start(context.Background())
	// The runner says which component failed; the error itself says why,
	// once.
	if err == nil || strings.Contains(err.Error(), "flannel: ") || !strings.Contains(err.Error(), "vxlan, host-gw, none") {
		t.Fatalf("Start error = %v", err)
	}
}

func TestStartNone(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, CNIConfFile)
	other := filepath.Join(dir, "05-user.conflist")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Flannel{Config{Backend: "none", CNIConfDir: dir}}
	if f.Name() != "flannel" {
		t.Errorf("Name() = %q", f.Name())
	}
	done, err := f.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("skiff's stale conflist still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("the user's conflist was touched: %v", err)
	}
	if done != nil {
		t.Error("a channel to wait on although nothing runs: the component is done once started")
	}
	cancel()
}

func TestStartValidatesConfig(t *testing.T) {
	f := &Flannel{Config{Backend: "vxlan", Kubeconfig: "/k", NodeName: "n"}}
	if _, err := f.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "no flannel config directory") {
		t.Fatalf("Start error = %v", err)
	}
}

func TestParseClusterCIDR(t *testing.T) {
	n, err := parseClusterCIDR("10.42.0.0/16")
	if err != nil || n.v4.String() != "10.42.0.0/16" || n.v6 != nil {
		t.Errorf("v4: %+v %v", n, err)
	}
	n, err = parseClusterCIDR("fd00:42::/56, 10.42.0.0/16")
	if err != nil || n.v4.String() != "10.42.0.0/16" || n.v6.String() != "fd00:42::/56" {
		t.Errorf("dual: %+v %v", n, err)
	}
	for _, bad := range []string{"", "10.42.0.0", "10.42.0.0/16,10.43.0.0/16", "fd00::/56,fd01::/56"} {
		if _, err := parseClusterCIDR(bad); err == nil {
			t.Errorf("parseClusterCIDR(%q): no error", bad)
		}
	}
}

// The net-conf.json written must be what flannel's own parser expects.
func TestBuildNetConfRoundTrip(t *testing.T) {
	nets, err := parseClusterCIDR("10.42.0.0/16,fd00:42::/56")
	if err != nil {
		t.Fatal(err)
	}
	data, err := buildNetConf(nets, BackendHostGW)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := subnet.ParseConfig(string(data))
	if err != nil {
		t.Fatalf("flannel rejects %s: %v", data, err)
	}
	if cfg.BackendType != "host-gw" || !cfg.EnableIPv4 || !cfg.EnableIPv6 ||
		cfg.Network.String() != "10.42.0.0/16" || cfg.IPv6Network.String() != "fd00:42::/56" {
		t.Errorf("parsed config = %+v", cfg)
	}

	nets, _ = parseClusterCIDR("10.42.0.0/16")
	data, _ = buildNetConf(nets, BackendVXLAN)
	cfg, err = subnet.ParseConfig(string(data))
	if err != nil || cfg.BackendType != "vxlan" || !cfg.EnableIPv4 || cfg.EnableIPv6 {
		t.Errorf("parsed v4 config = %+v, %v", cfg, err)
	}
}

// readSubnetEnv must read back what flannel's own writer produced.
func TestReadSubnetEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	if p := readSubnetEnv(path); !p.subnet.Empty() || !p.network.Empty() {
		t.Errorf("missing file gave %+v", p)
	}
	cfg := &subnet.Config{
		EnableIPv4: true, EnableIPv6: true,
		Network:     ip.FromIPNet(mustCIDR(t, "10.42.0.0/16")),
		IPv6Network: ip.FromIP6Net(mustCIDR(t, "fd00:42::/56")),
	}
	sn := ip.FromIPNet(mustCIDR(t, "10.42.7.0/24"))
	sn6 := ip.FromIP6Net(mustCIDR(t, "fd00:42:0:7::/64"))
	if err := subnet.WriteSubnetFile(path, cfg, true, sn, sn6, 1450); err != nil {
		t.Fatal(err)
	}
	p := readSubnetEnv(path)
	if !p.network.Equal(cfg.Network) || !p.subnet.Equal(sn) {
		t.Errorf("v4 read back %s %s", p.network, p.subnet)
	}
	if !p.ipv6Network.Equal(cfg.IPv6Network) || !p.ipv6Subnet.Equal(sn6) {
		t.Errorf("v6 read back %s %s", p.ipv6Network, p.ipv6Subnet)
	}
}

func fakeProcSys(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := procSys
	procSys = dir
	t.Cleanup(func() { procSys = old })
	return dir
}

func TestEnsureSysctls(t *testing.T) {
	dir := fakeProcSys(t, map[string]string{sysctlIPForward: "0\n", sysctlBridgeNFCall: "0\n"})
	if err := EnsureSysctls(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sysctlIPForward, sysctlBridgeNFCall} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if strings.TrimSpace(string(b)) != "1" {
			t.Errorf("%s = %q", name, b)
		}
	}
}

func TestEnsureSysctlsNoBrNetfilter(t *testing.T) {
	fakeProcSys(t, map[string]string{sysctlIPForward: "1\n"})
	err := EnsureSysctls()
	if err == nil || !strings.Contains(err.Error(), "br_netfilter") || !strings.Contains(err.Error(), "skiff check-config") {
		t.Fatalf("error = %v", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d")
	path := filepath.Join(dir, CNIConfFile)
	for _, content := range []string{"one", "two", "two"} {
		if err := writeFileAtomic(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v", st.Mode())
	}
}

func TestWaitForPodCIDR(t *testing.T) {
	client := fake.NewClientset()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := newNodeWatcher()
	go w.run(ctx, client, "n1")

	got := make(chan *v1.Node, 1)
	go func() {
		n, err := w.waitForPodCIDR(ctx, "n1")
		if err != nil {
			t.Error(err)
		}
		got <- n
	}()

	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u1"}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got:
		t.Fatalf("returned before the pod CIDR was set: %+v", n)
	case <-time.After(200 * time.Millisecond):
	}
	node.Spec.PodCIDR = "10.42.5.0/24"
	node.Spec.PodCIDRs = []string{"10.42.5.0/24"}
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got:
		if podCIDRs(n) != "10.42.5.0/24" {
			t.Errorf("pod CIDRs = %q", podCIDRs(n))
		}
	case <-ctx.Done():
		t.Fatal("waitForPodCIDR did not return after the pod CIDR was set")
	}
}

func TestWaitForPodCIDRHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w := newNodeWatcher()
	errc := make(chan error, 1)
	go func() {
		_, err := w.waitForPodCIDR(ctx, "n1")
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitForPodCIDR ignored cancellation")
	}
}

func TestCheckNodeListAccessForbidden(t *testing.T) {
	old := forbiddenGrace
	forbiddenGrace = 0
	defer func() { forbiddenGrace = old }()

	client := fake.NewClientset()
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "",
			errors.New("node 'n1' cannot read all nodes, only its own Node object"))
	})
	err := checkNodeListAccess(context.Background(), client, "/kubelet.kubeconfig")
	if err == nil || !strings.Contains(err.Error(), "may not list nodes") || !strings.Contains(err.Error(), "/kubelet.kubeconfig") {
		t.Fatalf("error = %v", err)
	}

	ok := fake.NewClientset()
	if err := checkNodeListAccess(context.Background(), ok, "/k"); err != nil {
		t.Fatalf("allowed list: %v", err)
	}
}

// A lease of an IPv4-only network has a nil IPv6 subnet, which flannel's
// own conversion would dereference.
func TestLeaseSubnets(t *testing.T) {
	v4 := &subnet.Config{EnableIPv4: true}
	l := &lease.Lease{Subnet: ip.FromIPNet(mustCIDR(t, "10.42.0.0/24"))}
	if got := joinNets(leaseSubnets(v4, l)); got != "10.42.0.0/24" {
		t.Errorf("v4 = %q", got)
	}
	dual := &subnet.Config{EnableIPv4: true, EnableIPv6: true}
	l.IPv6Subnet = ip.FromIP6Net(mustCIDR(t, "fd00:42::/64"))
	if got := joinNets(leaseSubnets(dual, l)); got != "10.42.0.0/24,fd00:42::/64" {
		t.Errorf("dual = %q", got)
	}
}
