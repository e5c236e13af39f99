// Package flannel runs upstream flannel in-process as the node's pod
// network: the kube subnet manager takes the node's pod CIDR from its Node
// object, a vxlan or host-gw backend routes between nodes, flannel's
// iptables traffic manager masquerades traffic leaving the cluster, and the
// node's CNI configuration (bridge + host-local) is written from the lease.
package flannel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/flannel-io/flannel/pkg/backend"
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/lease"
	"github.com/flannel-io/flannel/pkg/subnet"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"
	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	// Only the backends skiff supports are linked in; each registers itself
	// with backend.Register in its init.
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw"
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

const (
	// annotationPrefix is flannel's default, kept so that tools that read
	// flannel's node annotations work unchanged.
	annotationPrefix = "flannel.alpha.coreos.com"
	netConfFile      = "net-conf.json"
	subnetEnvFile    = "subnet.env"
	// iptablesResyncSeconds is flanneld's default period for re-adding
	// rules something else flushed.
	iptablesResyncSeconds = 5
)

// Config is what the agent passes to flannel.
type Config struct {
	// Kubeconfig holds credentials to watch and patch Node objects: the
	// node's own (system:node:<name>) suffice to patch its Node, but the
	// kube subnet manager also lists and watches all Node objects, which the
	// node authorizer refuses, so RBAC must grant get/list/watch on nodes.
	Kubeconfig string
	NodeName   string
	// Backend is "vxlan" (default, also for ""), "host-gw" or "none".
	Backend string
	// Iface optionally names the interface used between nodes; otherwise
	// the one holding NodeIP (or the default route's) is used.
	Iface string
	// NodeIP is the address flannel advertises to the other nodes.
	NodeIP net.IP
	// PublicIPs (an IPv4 and/or an IPv6 address), when set, are advertised
	// instead of NodeIP of the same family: the addresses other nodes reach
	// this one at through NAT.
	PublicIPs []net.IP
	// ClusterCIDR is the pod range: "v4", "v6" or "v4,v6".
	ClusterCIDR string
	// ConfDir receives net-conf.json.
	ConfDir string
	// RunDir receives subnet.env.
	RunDir string
	// CNIConfDir receives the CNI conflist.
	CNIConfDir string
	// IPAMDir keeps host-local's IP allocations; it must persist.
	IPAMDir string
}

// Flannel is the pod network component.
type Flannel struct{ Config }

// Name implements the component interface.
func (f *Flannel) Name() string { return "flannel" }

// Start waits for this node's Node object to have a pod CIDR, sets up the
// backend and the traffic rules, and writes subnet.env and the CNI
// configuration. It then returns; flannel keeps routing until ctx is
// cancelled. The returned channel receives the exit error (nil on a
// requested stop) and is closed.
//
// Errors name no component: the runner prefixes "start flannel".
func (f *Flannel) Start(ctx context.Context) (<-chan error, error) {
	return f.start(ctx)
}

func (f *Flannel) start(ctx context.Context) (<-chan error, error) {
	be, err := ValidateBackend(f.Backend)
	if err != nil {
		return nil, err
	}
	if be == BackendNone {
		return f.startNone()
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	nets, err := parseClusterCIDR(f.ClusterCIDR)
	if err != nil {
		return nil, err
	}
	if err := EnsureSysctls(); err != nil {
		return nil, err
	}
	if nets.v6 != nil {
		if err := ensureIPv6Sysctls(); err != nil {
			return nil, err
		}
	}
	if err := checkIPTables(nets); err != nil {
		return nil, err
	}
	nc, err := buildNetConf(nets, be)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", netConfFile, err)
	}
	if err := writeFileAtomic(f.netConfPath(), nc, 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", f.netConfPath(), err)
	}

	client, err := kubeclient.New(f.Kubeconfig)
	if err != nil {
		return nil, err
	}
	// The kube subnet manager takes the node name only from the
	// environment (flanneld runs as a pod with NODE_NAME set).
	if err := os.Setenv("NODE_NAME", f.NodeName); err != nil {
		return nil, fmt.Errorf("set NODE_NAME: %w", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	nw := newNodeWatcher()
	watchers.Go(func() { nw.run(runCtx, client, f.NodeName) })
	fail := func(err error) (<-chan error, error) {
		cancel()
		watchers.Wait()
		return nil, err
	}

	logrus.Infof("flannel: waiting for node %q to be registered with a pod CIDR", f.NodeName)
	node, err := nw.waitForPodCIDR(runCtx, f.NodeName)
	if err != nil {
		return fail(err)
	}
	if err := checkNodeListAccess(runCtx, client, f.Kubeconfig); err != nil {
		return fail(err)
	}
	inst, err := f.startInstance(runCtx, node)
	if err != nil {
		return fail(err)
	}

	done := make(chan error, 1)
	go func() {
		err := f.supervise(runCtx, nw, inst)
		cancel()
		watchers.Wait()
		done <- err
		close(done)
	}()
	return done, nil
}

// startNone leaves pod networking to the user. Skiff's own conflist from an
// earlier run is removed so that the runtime does not keep using a network
// nothing maintains any more.
func (f *Flannel) startNone() (<-chan error, error) {
	logrus.Info("flannel: backend \"none\": not starting flannel; install a CNI plugin and its configuration yourself")
	if f.CNIConfDir != "" {
		stale := filepath.Join(f.CNIConfDir, CNIConfFile)
		if err := os.Remove(stale); err == nil {
			logrus.Infof("flannel: removed %s left by an earlier run", stale)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale %s: %w", stale, err)
		}
	}
	// Nothing runs: the component is done.
	return nil, nil
}

func (f *Flannel) validate() error {
	missing := func(what string) error { return fmt.Errorf("no %s configured", what) }
	switch {
	case f.Kubeconfig == "":
		return missing("kubeconfig")
	case f.NodeName == "":
		return missing("node name")
	case f.ConfDir == "":
		return missing("flannel config directory")
	case f.RunDir == "":
		return missing("flannel run directory")
	case f.CNIConfDir == "":
		return missing("CNI config directory")
	case f.IPAMDir == "":
		return missing("CNI IPAM directory")
	}
	return nil
}

// checkIPTables fails early: flannel's traffic manager only logs when the
// iptables tools are missing, leaving pods without masquerading.
func checkIPTables(nets clusterNets) error {
	var tools []string
	if nets.v4 != nil {
		tools = append(tools, "iptables", "iptables-restore")
	}
	if nets.v6 != nil {
		tools = append(tools, "ip6tables", "ip6tables-restore")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found in PATH; flannel needs it for the pod masquerade and forward rules: install the iptables tools: %w", t, err)
		}
	}
	return nil
}

func (f *Flannel) netConfPath() string   { return filepath.Join(f.ConfDir, netConfFile) }
func (f *Flannel) subnetEnvPath() string { return filepath.Join(f.RunDir, subnetEnvFile) }
func (f *Flannel) cniConfPath() string   { return filepath.Join(f.CNIConfDir, CNIConfFile) }

// instance is one run of flannel's subnet manager, backend and traffic
// manager against one incarnation of the Node object.
type instance struct {
	cancel context.CancelFunc
	wg     *sync.WaitGroup
	uid    types.UID
	cidrs  string
}

func (in *instance) stop() {
	in.cancel()
	in.wg.Wait()
}

// supervise keeps flannel running until ctx ends. When the Node object is
// replaced (deleted and registered again) or its pod CIDR changes, the
// lease no longer matches, so flannel is set up again from scratch: that
// re-annotates the node and rewrites subnet.env and the CNI config.
func (f *Flannel) supervise(ctx context.Context, nw *nodeWatcher, inst *instance) error {
	// inst is reassigned below; the closure stops whichever is current.
	defer func() { inst.stop() }()
	for {
		select {
		case <-ctx.Done():
			logrus.Info("flannel: stopping")
			return nil
		case <-nw.changed:
		}
		n := nw.get()
		if n == nil || podCIDRs(n) == "" || (n.UID == inst.uid && podCIDRs(n) == inst.cidrs) {
			// A deleted node keeps its routes until it comes back: the
			// kubelet registers it again.
			continue
		}
		logrus.Infof("flannel: node %q changed (uid %s -> %s, pod CIDRs %q -> %q); setting flannel up again",
			f.NodeName, inst.uid, n.UID, inst.cidrs, podCIDRs(n))
		inst.stop()
		next, err := f.startInstance(ctx, n)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("flannel: restart after node change: %w", err)
		}
		inst = next
	}
}

// startInstance wires upstream flannel the way flanneld's main does with
// --kube-subnet-mgr --ip-masq: subnet manager, external interface, backend,
// traffic rules, subnet.env, then the backend's event loop.
func (f *Flannel) startInstance(parent context.Context, node *v1.Node) (_ *instance, err error) {
	ctx, cancel := context.WithCancel(parent)
	in := &instance{cancel: cancel, wg: &sync.WaitGroup{}, uid: node.UID, cidrs: podCIDRs(node)}
	defer func() {
		if err != nil {
			in.stop()
		}
	}()

	// setNodeNetworkUnavailable=false as in k3s: nothing sets the
	// NetworkUnavailable condition without a cloud provider.
	sm, err := kube.NewSubnetManager(ctx, "", f.Kubeconfig, annotationPrefix, f.netConfPath(), false)
	if err != nil {
		return nil, fmt.Errorf("kube subnet manager: %w", err)
	}
	config, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("network config: %w", err)
	}
	extIface, err := f.lookupExtIface(ctx, sm, config)
	if err != nil {
		return nil, err
	}
	logrus.Infof("flannel: using interface %s, advertising %s", extIface.IfaceName, advertised(extIface))

	bm := backend.NewManager(ctx, sm, extIface)
	be, err := bm.GetBackend(config.BackendType)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", config.BackendType, err)
	}
	bn, err := be.RegisterNetwork(ctx, in.wg, config)
	if err != nil {
		return nil, fmt.Errorf("register %s network: %w", config.BackendType, err)
	}
	l := bn.Lease()

	// Read before subnet.env is rewritten: the traffic manager removes the
	// masquerade rules of a previous network/subnet.
	prev := readSubnetEnv(f.subnetEnvPath())
	tm := &iptables.IPTablesManager{}
	if err := tm.Init(ctx); err != nil {
		return nil, fmt.Errorf("iptables traffic manager: %w", err)
	}
	if err := tm.SetupAndEnsureMasqRules(ctx,
		config.Network, prev.subnet, prev.network,
		config.IPv6Network, prev.ipv6Subnet, prev.ipv6Network,
		l, iptablesResyncSeconds, false); err != nil {
		return nil, fmt.Errorf("masquerade rules: %w", err)
	}
	// The FORWARD policy may be DROP (Docker sets it): accept the cluster
	// CIDR explicitly, as flanneld does by default.
	tm.SetupAndEnsureForwardRules(ctx, config.Network, config.IPv6Network, iptablesResyncSeconds)

	if err := sm.HandleSubnetFile(f.subnetEnvPath(), config, true, l.Subnet, l.IPv6Subnet, bn.MTU()); err != nil {
		return nil, fmt.Errorf("write %s: %w", f.subnetEnvPath(), err)
	}
	subnets := leaseSubnets(config, l)
	if err := f.writeCNIConfig(subnets, bn.MTU()); err != nil {
		return nil, err
	}

	in.wg.Go(func() { bn.Run(ctx) })
	if err := sm.CompleteLease(ctx, l, in.wg); err != nil {
		logrus.Warnf("flannel: complete lease: %v", err)
	}
	logrus.Infof("flannel: %s backend up, node subnet %s, MTU %d", config.BackendType, joinNets(subnets), bn.MTU())
	return in, nil
}

func (f *Flannel) writeCNIConfig(subnets []*net.IPNet, mtu int) error {
	data, err := buildConflist(cniParams{
		Subnets:     subnets,
		MTU:         mtu,
		IPAMDataDir: f.IPAMDir,
	})
	if err != nil {
		return fmt.Errorf("build CNI config: %w", err)
	}
	if err := writeFileAtomic(f.cniConfPath(), data, 0o644); err != nil {
		return fmt.Errorf("write CNI config %s: %w", f.cniConfPath(), err)
	}
	return nil
}

// leaseSubnets lists the node's pod subnets for the enabled families only:
// an unset IPv6 subnet in a lease is a nil pointer that flannel's
// conversion would dereference.
func leaseSubnets(config *subnet.Config, l *lease.Lease) []*net.IPNet {
	var out []*net.IPNet
	if config.EnableIPv4 && !l.Subnet.Empty() {
		out = append(out, l.Subnet.ToIPNet())
	}
	if config.EnableIPv6 && !l.IPv6Subnet.Empty() {
		out = append(out, l.IPv6Subnet.ToIPNet())
	}
	return out
}

func joinNets(nets []*net.IPNet) string {
	s := make([]string, len(nets))
	for i, n := range nets {
		s[i] = n.String()
	}
	return strings.Join(s, ",")
}

func advertised(e *backend.ExternalInterface) string {
	switch {
	case e.ExtAddr != nil && e.ExtV6Addr != nil:
		return e.ExtAddr.String() + "," + e.ExtV6Addr.String()
	case e.ExtV6Addr != nil:
		return e.ExtV6Addr.String()
	default:
		return e.ExtAddr.String()
	}
}

// lookupExtIface picks the interface flannel sends inter-node traffic on,
// preferring the one that holds NodeIP so that the advertised address is
// the interface's own (host-gw requires that).
func (f *Flannel) lookupExtIface(ctx context.Context, sm subnet.Manager, config *subnet.Config) (*backend.ExternalInterface, error) {
	stack, err := ipmatch.GetIPFamily(config.EnableIPv4, config.EnableIPv6)
	if err != nil {
		return nil, fmt.Errorf("IP family: %w", err)
	}
	var opts ipmatch.PublicIPOpts
	if ip := f.NodeIP; ip != nil {
		if ip.To4() != nil {
			opts.PublicIP = ip.String()
		} else {
			opts.PublicIPv6 = ip.String()
		}
	}
	for _, ip := range f.PublicIPs {
		if ip.To4() != nil {
			opts.PublicIP = ip.String()
		} else {
			opts.PublicIPv6 = ip.String()
		}
	}
	// As flanneld: an operator can override the advertised address with the
	// node-public-ip annotation.
	if a4, a6 := sm.GetStoredPublicIP(ctx); a4 != "" || a6 != "" {
		if a4 != "" {
			opts.PublicIP = a4
		}
		if a6 != "" {
			opts.PublicIPv6 = a6
		}
	}

	if f.NodeIP != nil {
		e, err := ipmatch.LookupExtIface(f.NodeIP.String(), "", "", stack, opts)
		switch {
		case err == nil && (f.Iface == "" || e.IfaceName == f.Iface):
			return e, nil
		case err == nil:
			logrus.Infof("flannel: node IP %s is on %s, not on the configured interface %s; using %s", f.NodeIP, e.IfaceName, f.Iface, f.Iface)
		default:
			logrus.Infof("flannel: node IP %s is not on a local interface (%v); advertising it from %s", f.NodeIP, err, ifaceOrDefault(f.Iface))
		}
	}
	e, err := ipmatch.LookupExtIface(f.Iface, "", "", stack, opts)
	if err != nil {
		return nil, fmt.Errorf("find the interface for flannel (%s): %w", ifaceOrDefault(f.Iface), err)
	}
	return e, nil
}

func ifaceOrDefault(iface string) string {
	if iface == "" {
		return "the default route's interface"
	}
	return "interface " + iface
}
