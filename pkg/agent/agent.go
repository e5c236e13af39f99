// Package agent runs a Kubernetes node: it prepares the host, joins the
// server with the token, and runs containerd, the kubelet, flannel and
// kube-proxy as components.
package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/agent/flannel"
	"github.com/skiff-io/skiff/pkg/agent/join"
	"github.com/skiff-io/skiff/pkg/agent/kubelet"
	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

// Agent is the node agent as one component: Start returns once the node's
// pieces are all running.
type Agent struct {
	Config *config.Agent
	// Runtime, when set, is the node's container runtime, started by the
	// caller (a server starts it beside its control plane). Otherwise the
	// agent starts its own once it has joined.
	Runtime *Runtime
}

func (a *Agent) Name() string { return "agent" }

// Start prepares the host, joins the server and starts the node's
// components in order. They run until ctx is cancelled.
func (a *Agent) Start(ctx context.Context) (<-chan error, error) {
	comps, err := a.components(ctx)
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- component.Run(ctx, func() { close(ready) }, comps...)
		close(done)
	}()
	select {
	case <-ready:
		return done, nil
	case err := <-done:
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
}

// components prepares what every piece needs (host settings, helper
// binaries, credentials) and returns the pieces in start order.
func (a *Agent) components(ctx context.Context) ([]component.Component, error) {
	cfg := a.Config
	paths := layout.New(cfg.DataDir)
	l := paths.Agent
	for _, dir := range []string{l.Dir, l.EtcDir, l.CredDir, l.CNIDataDir, l.KubeletDropInDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}

	var comps []component.Component
	var balancer *serverBalancer
	var err error
	apiURL := cfg.ServerURL
	if cfg.LoadBalancerAddress != "" {
		if balancer, err = newServerBalancer(cfg.LoadBalancerAddress, cfg.ServerURL); err != nil {
			return nil, err
		}
		apiURL = balancer.URL()
		comps = append(comps, balancer)
	}
	creds, err := join.Join(ctx, join.Options{
		ServerURL: cfg.ServerURL,
		Token:     cfg.Token,
		NodeName:  cfg.NodeName,
		NodeIPs:   append(slices.Clone(cfg.NodeIPs), externalIPs(cfg.NodeExternalIP)...),
		Dir:       l.CredDir,
		// The password outlives re-issued credentials; keep it beside them.
		PasswordFile: l.NodePasswordFile,
		APIServerURL: apiURL,
	})
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", cfg.ServerURL, err)
	}
	// The pod network backend is a cluster-wide choice made on the server.
	backend := cfg.FlannelBackend
	if backend == "" {
		backend = creds.Cluster.FlannelBackend
	}
	if backend == "" {
		backend = config.DefaultFlannelBackend
	}
	if err := prepareHost(backend, cfg.KubeProxyMode()); err != nil {
		return nil, err
	}

	runtime := a.Runtime
	if runtime == nil {
		runtime = NewRuntime(cfg, backend)
		comps = append(comps, runtime)
	}

	cgroupV2 := isCgroupV2()
	kl := &kubelet.Kubelet{
		NodeName:        cfg.NodeName,
		NodeIPs:         cfg.NodeIPs,
		Labels:          cfg.NodeLabels,
		Taints:          cfg.NodeTaints,
		RootDir:         cfg.KubeletRootDir(),
		ConfigDir:       l.KubeletConfigDir,
		DropInDir:       l.KubeletDropInDir,
		StaticPodDir:    l.PodManifestsDir,
		Kubeconfig:      creds.KubeletKubeconfig,
		ClientCA:        creds.ClientCA,
		ServingCert:     creds.ServingCert,
		ServingKey:      creds.ServingKey,
		RuntimeEndpoint: "unix://" + containerd.DefaultAddress,
		ClusterDNS:      splitList(creds.Cluster.ClusterDNS),
		ClusterDomain:   creds.Cluster.ClusterDomain,
		ResolvConf:      kubelet.ResolvConf(l.KubeletConfigDir),
		CgroupV2:        cgroupV2,
		ExtraArgs:       cfg.ExtraKubeletArgs,
		Debug:           cfg.Debug,
	}

	fl := &flannel.Flannel{Config: flannel.Config{
		Kubeconfig:  creds.KubeletKubeconfig,
		NodeName:    cfg.NodeName,
		Backend:     backend,
		Iface:       cfg.FlannelIface,
		NodeIP:      cfg.NodeIPs[0],
		PublicIP:    net.ParseIP(cfg.NodeExternalIP),
		ClusterCIDR: creds.Cluster.ClusterCIDR,
		ConfDir:     l.FlannelConfigDir,
		RunDir:      paths.Run.FlannelDir,
		CNIConfDir:  l.CNIConfDir,
		IPAMDir:     l.CNIIPAMDir,
	}}
	proxy := &kubelet.Proxy{
		NodeName:    cfg.NodeName,
		Kubeconfig:  creds.KubeProxyKubeconfig,
		ClusterCIDR: creds.Cluster.ClusterCIDR,
		ExtraArgs:   cfg.ExtraKubeProxyArgs,
		Debug:       cfg.Debug,
	}
	if balancer != nil {
		balancer.kubeconfig = creds.KubeProxyKubeconfig
	}
	return append(comps, afterRuntime{runtime, kl}, fl, proxy), nil
}

// prepareHost makes the host settings the pod network relies on, and checks
// the host tools kube-proxy and flannel call. (The shared root mount the
// kubelet needs is the runtime's, made before containerd starts.)
func prepareHost(backend, proxyMode string) error {
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

// externalIPs is the --node-external-ip address as a list, for the kubelet's
// serving certificate.
func externalIPs(s string) []net.IP {
	if ip := net.ParseIP(s); ip != nil {
		return []net.IP{ip}
	}
	return nil
}
