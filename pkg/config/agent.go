package config

import (
	"fmt"
	"strings"

	"github.com/skiff-io/skiff/pkg/layout"
)

// Node agent defaults.
const (
	DefaultFlannelBackend = "vxlan"
	DefaultRegistriesFile = "/etc/skiff/registries.yaml"
)

// FlannelBackends are the values --flannel-backend accepts.
var FlannelBackends = []string{"vxlan", "host-gw", "none"}

// Node holds the settings of the node agent that `skiff server` runs
// alongside the control plane (and that `skiff agent` runs alone).
type Node struct {
	NodeLabels []string
	NodeTaints []string

	ExtraKubeletArgs   []string
	ExtraKubeProxyArgs []string

	FlannelBackend string
	FlannelIface   string
	// NodeExternalIP is --node-external-ip: the address (or an IPv4 and an
	// IPv6 one, separated by a comma) other nodes and clients reach this
	// one at when it sits behind NAT. It is the Node's ExternalIP, and
	// flannel advertises it instead of the node IP.
	NodeExternalIP string
	// NodeInternalDNS and NodeExternalDNS are the Node's InternalDNS and
	// ExternalDNS addresses (--node-internal-dns, --node-external-dns).
	NodeInternalDNS []string
	NodeExternalDNS []string

	// Snapshotter is containerd's snapshotter; empty picks overlayfs where it
	// works and native elsewhere.
	Snapshotter    string
	RegistriesFile string
	// NoDefaultEndpoint keeps pulls of a mirrored registry on its mirrors
	// (--disable-default-registry-endpoint).
	NoDefaultEndpoint bool
	// DefaultRuntime is the runtime handler pods without a RuntimeClass
	// run with; empty means the bundled runc.
	DefaultRuntime string
}

// Agent holds the options of `skiff agent` as the user gave them: where
// the server is, how to prove membership, and who this node is. Complete
// turns them into a CompletedAgent.
type Agent struct {
	Node

	DataDir   string
	ServerURL string
	// Token is the join token as the user gave it (K10 form or bare secret).
	Token    string
	NodeName string
	// NodeIP is --node-ip: one address, or an IPv4 and an IPv6 one
	// separated by a comma; empty picks the default route's.
	NodeIP string
	Debug  bool
	// LoadBalancerAddress (host:port on loopback) puts the client-side load
	// balancer between the node's components and the servers; empty means
	// DefaultLoadBalancerAddress.
	LoadBalancerAddress string
}

// DefaultLoadBalancerAddress is where `skiff agent` serves the apiserver
// to its own components.
const DefaultLoadBalancerAddress = "127.0.0.1:6444"

// ValidateNode checks the node settings a user can set.
func (n *Node) ValidateNode() error {
	switch n.FlannelBackend {
	case "", "vxlan", "host-gw", "none":
	default:
		return fmt.Errorf("invalid --flannel-backend %q; use one of %s", n.FlannelBackend, strings.Join(FlannelBackends, ", "))
	}
	switch n.Snapshotter {
	case "", "overlayfs", "native":
	default:
		return fmt.Errorf("invalid --snapshotter %q; use overlayfs or native (or leave it empty to choose automatically)", n.Snapshotter)
	}
	// A RuntimeClass handler is a lower-case DNS label; whether this host
	// has the runtime is checked when containerd's config is written.
	if n.DefaultRuntime != "" && (strings.Contains(n.DefaultRuntime, ".") || !isDNSName(n.DefaultRuntime, true)) {
		return fmt.Errorf("invalid --default-runtime %q; give a runtime handler name such as crun or nvidia (lower-case letters, digits and '-')", n.DefaultRuntime)
	}
	if n.NodeExternalIP != "" {
		if err := validateIPPair("--node-external-ip", n.NodeExternalIP); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		flag  string
		names []string
	}{{"--node-internal-dns", n.NodeInternalDNS}, {"--node-external-dns", n.NodeExternalDNS}} {
		for _, name := range f.names {
			if !isDNSName(name, false) {
				return fmt.Errorf("invalid %s %q: not a DNS name; use a form like node1.example.com", f.flag, name)
			}
		}
	}
	for _, l := range n.NodeLabels {
		key, _, ok := strings.Cut(l, "=")
		if !ok || key == "" || strings.ContainsAny(l, " \t") {
			return fmt.Errorf("invalid --node-label %q; use the form key=value, e.g. disktype=ssd", l)
		}
	}
	for _, t := range n.NodeTaints {
		kv, effect, ok := strings.Cut(t, ":")
		key, _, _ := strings.Cut(kv, "=")
		if !ok || key == "" || (effect != "NoSchedule" && effect != "PreferNoSchedule" && effect != "NoExecute") {
			return fmt.Errorf("invalid --node-taint %q; use the form key=value:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute", t)
		}
	}
	return nil
}

// kubeletRootDir is the kubelet's root dir: DefaultKubeletRootDir unless
// --kubelet-arg root-dir=DIR moves it (the last one wins, as for the
// kubelet itself).
func (n *Node) kubeletRootDir() string {
	if dir := passthroughValue(n.ExtraKubeletArgs, "root-dir"); dir != "" {
		return dir
	}
	return layout.DefaultKubeletRootDir
}

// passthroughValue finds the last key=value among a --*-arg flag's values.
func passthroughValue(args []string, key string) string {
	value := ""
	for _, a := range args {
		k, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if ok && k == key {
			value = v
		}
	}
	return value
}

// PassthroughFlags turns the "name=value" values of the --*-arg flags into
// command-line flags ("--name=value") for the component they are meant for.
func PassthroughFlags(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		out = append(out, "--"+strings.TrimLeft(a, "-"))
	}
	return out
}
