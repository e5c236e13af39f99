// Package agent runs a Kubernetes node: it joins the server with the token,
// prepares the host, and runs containerd, the kubelet, flannel and
// kube-proxy. The node is a list of components with declared dependencies,
// run by pkg/component on its own (`skiff agent`) or in the server's list.
package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/pkg/agent/clusterips"
	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/agent/flannel"
	"github.com/skiff-io/skiff/pkg/agent/join"
	"github.com/skiff-io/skiff/pkg/agent/kubelet"
	"github.com/skiff-io/skiff/pkg/agent/kubelet/settings"
	"github.com/skiff-io/skiff/pkg/agent/netpol"
	"github.com/skiff-io/skiff/pkg/bundle"
	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/nodeaddress"
)

// Run runs `skiff agent`: a node joined to a remote server, until ctx is
// cancelled.
func Run(ctx context.Context, cfg *config.CompletedAgent) error {
	SetupLogging(cfg.Node.Debug)
	TuneGC(ctx)
	if err := os.MkdirAll(cfg.Node.Paths.Agent.Dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s is not writable (%v); run as root or pass a --data-dir you own", cfg.Node.Paths.DataDir, err)
	}
	node := &Node{Config: cfg}
	ready := func() {
		logrus.Infof("node %s joined %s and is running", cfg.Node.Name, cfg.ServerURL)
		ReleaseStartPages(ctx)
	}
	if err := component.Run(ctx, ready, node.Components()...); err != nil {
		return err
	}
	logrus.Info("skiff agent stopped")
	return nil
}

// Node is one node's components.
type Node struct {
	Config *config.CompletedAgent
	// JoinAfter names components of the server this node runs beside that
	// serve the join endpoints; the join waits for them.
	JoinAfter []string
	// KubeletAfter names components of that server the kubelet must start
	// after.
	KubeletAfter []string
}

// Names of the node's components, for the components that require them.
const (
	joinName       = "join"
	hostName       = "host"
	helpersName    = "helpers"
	containerdName = "containerd"
	imagesName     = "images"
	kubeletName    = "kubelet"
	flannelName    = "flannel"
	proxyName      = "kube-proxy"
)

// Components returns the node's components. The join, the host set-up
// and the helper executables are one-shot work; what they produce (the
// credentials, the pod network backend, the helpers' dir) is handed to the
// components that require them. On a server the runtime (helpers,
// containerd, the system images) gets ready while the control plane
// starts; `skiff agent` starts it only after the join, so a refused token
// starts nothing.
func (n *Node) Components() []component.Component {
	cfg := n.Config
	node := &cfg.Node
	paths := node.Paths
	l := paths.Agent

	var creds component.Output[*join.Credentials]
	var binDir component.Output[string]
	// The pod network backend is a cluster-wide choice made on the server:
	// a server knows it, an agent learns it when it joins.
	var backend component.Output[string]
	// So is the registry the system images are named under.
	var registry component.Output[string]
	var runtimeAfter []string
	if node.FlannelBackend != "" {
		backend.Set(node.FlannelBackend)
		registry.Set(node.SystemDefaultRegistry)
	} else {
		runtimeAfter = []string{joinName}
	}

	balancer := newServerBalancer(cfg.LoadBalancerAddress, cfg.ServerURL)

	joinTask := component.Task(joinName, func(ctx context.Context) error {
		c, err := join.Join(ctx, join.Options{
			ServerURL: cfg.ServerURL,
			Token:     cfg.Token,
			NodeName:  node.Name,
			NodeIPs:   netIPs(node.CertificateIPs()),
			Dir:       l.CredDir,
			// The password outlives re-issued credentials; keep it beside them.
			PasswordFile: l.NodePasswordFile,
			APIServerURL: balancer.URL(),
		})
		if err != nil {
			return fmt.Errorf("join %s: %w", cfg.ServerURL, err)
		}
		creds.Set(c)
		if node.FlannelBackend == "" {
			b := c.Cluster.FlannelBackend
			if b == "" {
				b = config.DefaultFlannelBackend
			}
			backend.Set(b)
			registry.Set(c.Cluster.SystemDefaultRegistry)
		}
		return nil
	})
	comps := []component.Component{
		component.Requiring(joinTask, n.JoinAfter...),
		// After the join: its health checks must not reach a server before
		// the join has checked that server's CA against the token.
		component.Requiring(balancer, joinName),
	}

	hostTask := component.Task(hostName, func(context.Context) error {
		return prepareHost(paths, backend.Get(), node.KubeProxyMode)
	})
	helpersTask := component.Task(helpersName, func(context.Context) error {
		dir, err := bundle.Extract(paths.HelpersDir)
		if err != nil {
			return fmt.Errorf("extract helper executables: %w", err)
		}
		logrus.Infof("helper executables in %s", dir)
		binDir.Set(dir)
		return nil
	})
	ctrd := component.Build(containerdName, func() (component.Component, error) {
		return n.containerd(binDir.Get(), backend.Get(), registry.Get())
	})
	images := component.Build(imagesName, func() (component.Component, error) {
		return &systemImages{
			address:  containerd.DefaultAddress,
			binDir:   binDir.Get(),
			dir:      &containerd.ImageDir{Dir: l.ImagesDir, Address: containerd.DefaultAddress},
			registry: registry.Get(),
		}, nil
	})
	comps = append(comps,
		component.Requiring(hostTask, runtimeAfter...),
		component.Requiring(helpersTask, runtimeAfter...),
		component.Requiring(ctrd, hostName, helpersName),
		component.Requiring(images, containerdName),
	)

	kl := component.Build(kubeletName, func() (component.Component, error) {
		c := creds.Get()
		return &kubelet.Kubelet{Kubelet: settings.Kubelet{
			NodeName:        node.Name,
			NodeIPs:         netIPs(node.IPs),
			Labels:          node.Labels,
			Taints:          node.Taints,
			RootDir:         node.KubeletRootDir,
			ConfigDir:       l.KubeletConfigDir,
			DropInDir:       l.KubeletDropInDir,
			StaticPodDir:    l.PodManifestsDir,
			Kubeconfig:      c.KubeletKubeconfig,
			ClientCA:        c.ClientCA,
			ServingCert:     c.ServingCert,
			ServingKey:      c.ServingKey,
			RuntimeEndpoint: "unix://" + containerd.DefaultAddress,
			ClusterDNS:      splitList(c.Cluster.ClusterDNS),
			ClusterDomain:   c.Cluster.ClusterDomain,
			ResolvConf:      settings.ResolvConf(l.KubeletConfigDir),
			CgroupV2:        isCgroupV2(),
			ExtraFlags:      node.KubeletFlags,
			Debug:           node.Debug,
		}}, nil
	})
	fl := component.Build(flannelName, func() (component.Component, error) {
		c := creds.Get()
		return &flannel.Flannel{Config: flannel.Config{
			Kubeconfig:  c.KubeletKubeconfig,
			NodeName:    node.Name,
			Backend:     backend.Get(),
			Iface:       node.FlannelIface,
			NodeIP:      net.IP(node.IPs[0].AsSlice()),
			PublicIPs:   netIPs(node.ExternalIPs),
			ClusterCIDR: c.Cluster.ClusterCIDR,
			ConfDir:     l.FlannelConfigDir,
			RunDir:      paths.Run.FlannelDir,
			CNIConfDir:  l.CNIConfDir,
			IPAMDir:     l.CNIIPAMDir,
		}}, nil
	})
	proxy := component.Build(proxyName, func() (component.Component, error) {
		c := creds.Get()
		return &kubelet.Proxy{Proxy: settings.Proxy{
			NodeName:    node.Name,
			Kubeconfig:  c.KubeProxyKubeconfig,
			ClusterCIDR: c.Cluster.ClusterCIDR,
			ExtraFlags:  node.KubeProxyFlags,
			Debug:       node.Debug,
		}}, nil
	})
	addresses := component.Build("node-addresses", func() (component.Component, error) {
		return &nodeaddress.Publish{
			Kubeconfig: creds.Get().KubeletKubeconfig,
			NodeName:   node.Name,
			Addresses: nodeaddress.Addresses{
				InternalIPs: node.IPs,
				ExternalIPs: node.ExternalIPs,
				InternalDNS: node.InternalDNS,
				ExternalDNS: node.ExternalDNS,
			},
		}, nil
	})
	policies := component.Build("network-policy", func() (component.Component, error) {
		c := creds.Get()
		if c.Cluster.DisableNetworkPolicy {
			return component.Task("network-policy", func(context.Context) error {
				logrus.Info("NetworkPolicies are not enforced: the server runs with --disable-network-policy")
				return nil
			}), nil
		}
		return &netpol.Controller{
			Kubeconfig:   c.KubeletKubeconfig,
			NodeName:     node.Name,
			ClusterCIDRs: c.Cluster.ClusterCIDR,
			ServiceCIDRs: c.Cluster.ServiceCIDR,
		}, nil
	})
	// kube-proxy's nftables mode stops what the guard stops, and in its
	// ipvs mode the ClusterIPs are the node's own addresses.
	guard := component.Build("cluster-ip-guard", func() (component.Component, error) {
		if mode := node.KubeProxyMode; mode != "" && mode != "iptables" {
			return component.Task("cluster-ip-guard", func(context.Context) error { return nil }), nil
		}
		return &clusterips.Guard{ServiceCIDRs: creds.Get().Cluster.ServiceCIDR}, nil
	})
	discovery := component.Build("server-discovery", func() (component.Component, error) {
		return balancer.discovery(creds.Get().KubeProxyKubeconfig), nil
	})
	return append(comps,
		component.Requiring(kl, append([]string{joinName, imagesName}, n.KubeletAfter...)...),
		component.Requiring(fl, kubeletName),
		component.Requiring(proxy, flannelName),
		// After kube-proxy: it catches what kube-proxy's rules leave.
		component.Requiring(guard, proxyName),
		component.Requiring(discovery, joinName),
		component.Requiring(addresses, kubeletName),
		component.Requiring(policies, kubeletName),
	)
}

// containerd is the node's containerd, with the CNI the pod network
// backend calls for.
func (n *Node) containerd(binDir, backend, registry string) (*containerd.Process, error) {
	node := &n.Config.Node
	l := node.Paths.Agent
	cniBinDirs, cniConfDir := []string{binDir}, l.CNIConfDir
	if backend == flannel.BackendNone {
		// Stock CNIs install their plugins and config in the host's
		// standard dirs, their own versions of the common plugins first;
		// the bundled ones (loopback, portmap, bandwidth...) stay behind
		// them for configs that name them.
		cniBinDirs, cniConfDir = []string{layout.HostCNIBinDir, binDir}, layout.HostCNIConfDir
		if err := os.MkdirAll(cniConfDir, 0o755); err != nil {
			return nil, fmt.Errorf("create %s for the CNI you bring (--flannel-backend none): %w", cniConfDir, err)
		}
	}
	return &containerd.Process{Config: containerd.Config{
		RootDir:           l.ContainerdDir,
		StateDir:          node.Paths.Run.ContainerdDir,
		ConfigDir:         l.ContainerdConfigDir,
		Address:           containerd.DefaultAddress,
		BinDir:            binDir,
		CNIBinDirs:        cniBinDirs,
		CNIConfDir:        cniConfDir,
		SandboxImage:      WithRegistry(PauseImage, registry),
		NoDefaultEndpoint: node.NoDefaultEndpoint,
		Snapshotter:       node.Snapshotter,
		RegistriesFile:    node.RegistriesFile,
		LogFile:           l.ContainerdLog,
		Debug:             node.Debug,
		DefaultRuntime:    node.DefaultRuntime,
		Templates:         []string{l.ContainerdConfigV3Template, l.ContainerdConfigTemplate},
	}}, nil
}

// prepareHost makes the node's dirs and the host settings the pod network
// relies on, and checks the host tools kube-proxy and flannel call.
func prepareHost(paths layout.Layout, backend, proxyMode string) error {
	l := paths.Agent
	for _, dir := range []string{l.Dir, l.EtcDir, l.CredDir, l.CNIDataDir, l.KubeletDropInDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(l.ImagesDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", l.ImagesDir, err)
	}
	// Before containerd mounts anything: volumes with Bidirectional
	// propagation need a shared root mount, and many container images and
	// minimal systems leave / private.
	if err := unix.Mount("", "/", "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a shared mount (mount --make-rshared /): %w; skiff needs to run as root", err)
	}
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found in PATH: kube-proxy and the pod network need it; install the iptables package (apt-get install iptables)", tool)
		}
	}
	if proxyMode == "nftables" {
		if _, err := exec.LookPath("nft"); err != nil {
			return fmt.Errorf("nft not found in PATH: kube-proxy's nftables mode needs it; install the nftables package (apt-get install nftables) or drop --kube-proxy-arg proxy-mode=nftables")
		}
	}
	if backend == flannel.BackendNone {
		return nil
	}
	return flannel.EnsureSysctls()
}

func isCgroupV2() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
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

// netIPs converts addresses for the packages that take net.IP.
func netIPs(addrs []netip.Addr) []net.IP {
	out := make([]net.IP, len(addrs))
	for i, a := range addrs {
		out[i] = net.IP(a.AsSlice())
	}
	return out
}
