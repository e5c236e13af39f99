// Package settings generates the kubelet's configuration and command line
// and kube-proxy's flags from a node's settings. It links neither
// component, so they are tested without them.
package settings

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// HealthzPort is the kubelet's local health endpoint; it only listens on
// loopback.
const HealthzPort = 10248

// ProxyHealthzPort is kube-proxy's health endpoint, on loopback.
const ProxyHealthzPort = 10256

// imageCredentialsVerificationPolicy is the kubelet's
// imagePullCredentialsVerificationPolicy on every node: a pod never has to
// prove to a registry that it may use an image the node already has.
//
// Images imported from tarballs (the node's images folder, `skiff cluster
// load`, skiff's system images) are put on the node by its owner, for
// every pod, and must run with no registry. The kubelet's default policy,
// NeverVerifyPreloadedImages, breaks that: it keeps one pull record per
// image ID listing the names it pulled that image under, and once such a
// record exists any other name of the same image must be verified. An
// image pulled once as registry.example/app and imported later as
// example/app (same ID) then fails under the imported name with "is not
// present with pull policy of Never", or with IfNotPresent makes a pull
// that needs the registry (upstream kubernetes#138175, still open for
// 1.37). skiff cannot add the imported name to the record: the kubelet
// reads its records once at start and serves them from memory, and images
// are imported while it runs. The allowlist policy would instead verify
// every imported image not on a fixed list of names. NeverVerify is the
// one policy under which imported images always run; what it gives up is
// KEP-2535's check that a pod may use a private image another pod pulled
// with its own pull secret, a check Kubernetes did not make before 1.33.
// Nodes whose tenants must not run each other's private images set
// NeverVerifyPreloadedImages back in a KubeletConfiguration drop-in and
// accept the failure above (docs/security.md).
const imageCredentialsVerificationPolicy = "NeverVerify"

// ensureSecretPulledImagesGate is the kubelet feature gate of KEP-2535's
// check.
const ensureSecretPulledImagesGate = "KubeletEnsureSecretPulledImages"

// disablesFeature reports whether the user's --feature-gates flags turn
// gate off; of several, the last that names it wins, as with the kubelet's
// own flag.
func (k *Kubelet) disablesFeature(gate string) bool {
	disabled := false
	for _, flag := range k.ExtraFlags {
		gates, ok := strings.CutPrefix(flag, "--feature-gates=")
		if !ok {
			continue
		}
		for _, g := range strings.Split(gates, ",") {
			if name, value, ok := strings.Cut(strings.TrimSpace(g), "="); ok && name == gate {
				disabled = strings.EqualFold(strings.TrimSpace(value), "false")
			}
		}
	}
	return disabled
}

// Kubelet is what the kubelet is configured from.
type Kubelet struct {
	NodeName  string
	NodeIPs   []net.IP
	Labels    []string
	Taints    []string
	RootDir   string // pods' volumes and state; default /var/lib/kubelet
	ConfigDir string // where the generated KubeletConfiguration goes
	// DropInDir holds users' KubeletConfiguration drop-ins (*.conf), which
	// the kubelet merges over the generated file in lexical order; a
	// --kubelet-arg config-dir=DIR replaces it.
	DropInDir       string
	StaticPodDir    string
	Kubeconfig      string
	ClientCA        string
	ServingCert     string
	ServingKey      string
	RuntimeEndpoint string // unix:// address of containerd
	ClusterDNS      []string
	ClusterDomain   string
	ResolvConf      string
	CgroupV2        bool
	ExtraFlags      []string // the user's, appended last so they win
	Debug           bool
}

// Configuration is the KubeletConfiguration skiff generates.
func (k *Kubelet) Configuration() map[string]any {
	cfg := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true, "cacheTTL": "2m"},
			"x509":      map[string]any{"clientCAFile": k.ClientCA},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"cgroupDriver":             "cgroupfs",
		"clusterDNS":               k.ClusterDNS,
		"clusterDomain":            k.ClusterDomain,
		"containerRuntimeEndpoint": k.RuntimeEndpoint,
		"tlsCertFile":              k.ServingCert,
		"tlsPrivateKeyFile":        k.ServingKey,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              HealthzPort,
		"readOnlyPort":             0,
		"staticPodPath":            k.StaticPodDir,
		"resolvConf":               k.ResolvConf,
		"serializeImagePulls":      false,
		// Pod sandboxes must not ask for an OOM score the host may refuse
		// (no CAP_SYS_RESOURCE in some VMs and containers).
		"oomScoreAdj": 0,
		// Small disks (SD cards, CI runners) would otherwise be under
		// eviction pressure from the start.
		"evictionHard": map[string]string{
			"imagefs.available": "5%",
			"nodefs.available":  "5%",
			"memory.available":  "100Mi",
		},
		"imageGCHighThresholdPercent": 95,
		"imageGCLowThresholdPercent":  90,
		"failSwapOn":                  false,
		"fileCheckFrequency":          "10s",
	}
	if !k.disablesFeature(ensureSecretPulledImagesGate) {
		// The kubelet refuses the setting when the user's flags turn the
		// check off altogether.
		cfg["imagePullCredentialsVerificationPolicy"] = imageCredentialsVerificationPolicy
	}
	if !k.CgroupV2 {
		// Kubernetes 1.35+ refuses cgroup v1 unless told otherwise; many
		// edge devices still boot with it.
		cfg["failCgroupV1"] = false
	}
	return cfg
}

// Args are the kubelet command-line flags; ExtraFlags come last and win.
func (k *Kubelet) Args(configFile string) []string {
	args := []string{
		"--config=" + configFile,
		"--kubeconfig=" + k.Kubeconfig,
		"--root-dir=" + k.RootDir,
		"--hostname-override=" + k.NodeName,
		"--cert-dir=" + filepath.Join(k.RootDir, "pki"),
		// The kubelet then sets status.addresses only while it is empty and
		// leaves them to the servers' node address controller, which adds
		// the external IPs and DNS names (pkg/nodeaddress).
		"--cloud-provider=external",
	}
	if k.DropInDir != "" {
		args = append(args, "--config-dir="+k.DropInDir)
	}
	if len(k.NodeIPs) > 0 {
		ips := make([]string, len(k.NodeIPs))
		for i, ip := range k.NodeIPs {
			ips[i] = ip.String()
		}
		args = append(args, "--node-ip="+strings.Join(ips, ","))
	}
	if len(k.Labels) > 0 {
		args = append(args, "--node-labels="+strings.Join(k.Labels, ","))
	}
	if len(k.Taints) > 0 {
		args = append(args, "--register-with-taints="+strings.Join(k.Taints, ","))
	}
	if k.Debug {
		args = append(args, "--v=2")
	}
	return append(args, k.ExtraFlags...)
}

// ResolvConf returns a resolv.conf whose nameservers pods can reach: a
// loopback resolver (systemd-resolved's 127.0.0.53) is useless inside a pod.
// Without one, a fallback naming a public resolver is written into dir, so
// that cluster DNS (which forwards to it) still starts and serves cluster
// names on a host that is offline.
func ResolvConf(dir string) string {
	return resolvConf([]string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}, dir)
}

func resolvConf(candidates []string, dir string) string {
	for _, candidate := range candidates {
		data, err := os.ReadFile(candidate)
		if err != nil {
			continue
		}
		usable := false
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			if len(fields) >= 2 && fields[0] == "nameserver" {
				if ip := net.ParseIP(fields[1]); ip != nil && !ip.IsLoopback() {
					usable = true
				}
			}
		}
		if usable {
			return candidate
		}
	}
	fallback := filepath.Join(dir, "resolv.conf")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		if _, err := fileutil.WriteIfChanged(fallback, []byte("nameserver 8.8.8.8\n"), 0o644); err == nil {
			logrus.Warnf("no resolv.conf with a non-loopback nameserver found; pods and cluster DNS forward to 8.8.8.8 (%s)", fallback)
			return fallback
		}
	}
	logrus.Warn("no resolv.conf with a non-loopback nameserver found; pods will only resolve cluster names")
	return ""
}

// Proxy is what kube-proxy is configured from.
type Proxy struct {
	NodeName    string
	Kubeconfig  string
	ClusterCIDR string
	ExtraFlags  []string // the user's, appended last so they win
	Debug       bool
}

// Args are kube-proxy's flags; ExtraFlags come last and win. Flags rather
// than a configuration file: upstream ignores every flag but logging once a
// file is given, which would silently drop the user's --kube-proxy-arg.
func (p *Proxy) Args() []string {
	args := []string{
		"--kubeconfig=" + p.Kubeconfig,
		"--proxy-mode=iptables",
		"--hostname-override=" + p.NodeName,
		"--cluster-cidr=" + p.ClusterCIDR,
		fmt.Sprintf("--healthz-bind-address=127.0.0.1:%d", ProxyHealthzPort),
		"--metrics-bind-address=127.0.0.1:10249",
		// The conntrack table size is a host-wide setting; leave it alone
		// rather than fail where it cannot be changed.
		"--conntrack-max-per-core=0",
	}
	if p.Debug {
		args = append(args, "--v=2")
	}
	return append(args, p.ExtraFlags...)
}
