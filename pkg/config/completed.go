package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/robfig/cron/v3"

	"github.com/skiff-io/skiff/pkg/layout"
)

// The options (Server, Agent) hold what a user typed. Complete checks them,
// applies the defaults that depend on the host (node name and addresses)
// and returns the typed configuration the components read: parsed once
// here, never re-parsed downstream, and not changed after Complete.

// Cluster is the cluster-wide network, parsed.
type Cluster struct {
	// ClusterCIDRs and ServiceCIDRs hold one range, or an IPv4 and an IPv6
	// one; the first is the primary family.
	ClusterCIDRs []netip.Prefix
	ServiceCIDRs []netip.Prefix
	// APIServiceIP is the first address of the primary service range: the
	// apiserver claims it for the "kubernetes" Service.
	APIServiceIP  netip.Addr
	ClusterDNS    netip.Addr
	ClusterDomain string
}

// ClusterCIDRList is ClusterCIDRs in the comma form components' flags take.
func (c Cluster) ClusterCIDRList() string { return prefixList(c.ClusterCIDRs) }

// ServiceCIDRList is ServiceCIDRs in the comma form components' flags take.
func (c Cluster) ServiceCIDRList() string { return prefixList(c.ServiceCIDRs) }

func prefixList(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// CompletedNode is a node agent's configuration, complete.
type CompletedNode struct {
	Paths layout.Layout
	Name  string
	// IPs holds at least one address: the configured ones, or the address
	// of the interface with the default route.
	IPs []netip.Addr
	// ExternalIPs (none, one, or an IPv4 and an IPv6 one) are where other
	// nodes and clients reach this one from behind NAT.
	ExternalIPs []netip.Addr
	// InternalDNS and ExternalDNS are the node's DNS names of those types.
	InternalDNS []string
	ExternalDNS []string
	Labels      []string
	Taints      []string
	// KubeletFlags and KubeProxyFlags are the users' --kubelet-arg and
	// --kube-proxy-arg values as command-line flags.
	KubeletFlags   []string
	KubeProxyFlags []string
	// KubeletRootDir is the kubelet's root, moved by --kubelet-arg root-dir.
	KubeletRootDir string
	// KubeProxyMode is kube-proxy's mode from --kube-proxy-arg proxy-mode,
	// "" for its default (iptables).
	KubeProxyMode string
	// FlannelBackend is this node's pod network backend; "" on an agent
	// means the cluster's, learned when it joins.
	FlannelBackend string
	FlannelIface   string
	Snapshotter    string
	RegistriesFile string
	// NoDefaultEndpoint keeps pulls of a mirrored registry on its mirrors.
	NoDefaultEndpoint bool
	// SystemDefaultRegistry is the registry the system images are named
	// under ("" for skiff.local); like FlannelBackend, "" on an agent means
	// the cluster's, learned when it joins.
	SystemDefaultRegistry string
	// DefaultRuntime is containerd's default runtime handler; "" for the
	// bundled runc.
	DefaultRuntime string
	Debug          bool
}

// CertificateIPs are the node's addresses its kubelet serving certificate
// names: the node IPs and the external IPs.
func (n *CompletedNode) CertificateIPs() []netip.Addr {
	ips := slices.Clone(n.IPs)
	for _, ip := range n.ExternalIPs {
		if !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	return ips
}

// CompletedAgent is `skiff agent`'s configuration, complete.
type CompletedAgent struct {
	Node      CompletedNode
	ServerURL string
	// Token is the join token as the user gave it (K10 form or bare secret).
	Token string
	// LoadBalancerAddress (host:port on loopback) is where the node's
	// components reach the apiservers through the client-side load balancer.
	LoadBalancerAddress string
}

// CompletedServer is `skiff server`'s configuration, complete.
type CompletedServer struct {
	Paths       layout.Layout
	BindAddress netip.Addr
	HTTPSPort   int
	// AdvertiseAddress is the address the apiserver publishes for itself:
	// --advertise-address, or the node's first IP.
	AdvertiseAddress netip.Addr
	// NodeName and NodeIPs are this machine's identity, resolved even with
	// --disable-agent: the serving certificate names them.
	NodeName string
	NodeIPs  []netip.Addr
	// SANIPs and SANNames are the --tls-san values by kind.
	SANIPs   []netip.Addr
	SANNames []string
	Cluster  Cluster
	// FlannelBackend is the cluster's pod network backend.
	FlannelBackend string

	Token      string
	AgentToken string

	KubeconfigPath string
	KubeconfigMode os.FileMode

	Datastore         Datastore
	SecretsEncryption bool
	// DisableNetworkPolicy: no node enforces NetworkPolicies, and nodes
	// get no role to read pods and policies.
	DisableNetworkPolicy bool
	Disable              []string
	// DisableHelmController runs no HelmChart controller.
	DisableHelmController bool
	// LocalStoragePath is where local-path volumes are made on every node.
	LocalStoragePath string
	// SystemDefaultRegistry is the registry the system images are named
	// under; "" keeps skiff.local.
	SystemDefaultRegistry string

	// EtcdSnapshots are this server's scheduled snapshots of the embedded
	// etcd; other datastores have none.
	EtcdSnapshots EtcdSnapshots
	// ClusterReset makes the embedded etcd member a new one-member cluster
	// keeping its data, or the data of the snapshot at
	// ClusterResetRestorePath; the server stops once it is done.
	ClusterReset            bool
	ClusterResetRestorePath string

	APIServerFlags         []string
	ControllerManagerFlags []string
	SchedulerFlags         []string

	// Node is the server's own node; nil with --disable-agent.
	Node  *CompletedNode
	Debug bool
}

// Complete checks every setting, reporting every problem at once, and
// returns the server's complete configuration.
func (s *Server) Complete() (*CompletedServer, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	// Validate has accepted every value below: the parsing cannot fail.
	clusterCIDRs, _ := parseCIDRList("--cluster-cidr", s.ClusterCIDR, DefaultClusterCIDR)
	serviceCIDRs, _ := parseCIDRList("--service-cidr", s.ServiceCIDR, DefaultServiceCIDR)
	apiServiceIP, _ := firstUsable(serviceCIDRs[0])
	dns, _ := parseIP(s.ClusterDNS)
	bind, _ := parseIP(s.BindAddress)
	mode, _ := parseFileMode(s.KubeconfigMode)

	name, err := resolveNodeName(s.NodeName)
	if err != nil {
		return nil, err
	}
	ips := resolveNodeIPs(parseNodeIPs(s.NodeIP))
	advertise := ips[0]
	if s.AdvertiseAddress != "" {
		advertise, _ = parseIP(s.AdvertiseAddress)
	}
	paths := layout.New(s.DataDir)
	c := &CompletedServer{
		Paths:            paths,
		BindAddress:      bind,
		HTTPSPort:        s.HTTPSPort,
		AdvertiseAddress: advertise,
		NodeName:         name,
		NodeIPs:          ips,
		Cluster: Cluster{
			ClusterCIDRs:  clusterCIDRs,
			ServiceCIDRs:  serviceCIDRs,
			APIServiceIP:  apiServiceIP,
			ClusterDNS:    dns,
			ClusterDomain: s.ClusterDomain,
		},
		FlannelBackend:         s.FlannelBackend,
		Token:                  s.Token,
		AgentToken:             s.AgentToken,
		KubeconfigPath:         s.KubeconfigPath,
		KubeconfigMode:         mode,
		Datastore:              s.datastore(paths),
		SecretsEncryption:      s.SecretsEncryption,
		DisableNetworkPolicy:   s.DisableNetworkPolicy,
		Disable:                slices.Clone(s.Disable),
		DisableHelmController:  s.DisableHelmController,
		LocalStoragePath:       s.LocalStoragePath,
		SystemDefaultRegistry:  s.SystemDefaultRegistry,
		APIServerFlags:         PassthroughFlags(s.ExtraAPIServerArgs),
		ControllerManagerFlags: PassthroughFlags(s.ExtraControllerManagerArgs),
		SchedulerFlags:         PassthroughFlags(s.ExtraSchedulerArgs),
		Debug:                  s.Debug,
	}
	c.EtcdSnapshots = s.etcdSnapshots(paths)
	c.ClusterReset, c.ClusterResetRestorePath = s.ClusterReset, s.ClusterResetRestorePath
	if c.FlannelBackend == "" {
		c.FlannelBackend = DefaultFlannelBackend
	}
	if c.LocalStoragePath == "" {
		c.LocalStoragePath = paths.StorageDir
	}
	for _, san := range s.TLSSANs {
		if ip, ok := parseIP(san); ok {
			c.SANIPs = append(c.SANIPs, ip)
		} else {
			c.SANNames = append(c.SANNames, san)
		}
	}
	if !s.DisableAgent {
		node := s.Node.complete(paths, name, ips, s.Debug)
		node.FlannelBackend = c.FlannelBackend
		node.SystemDefaultRegistry = c.SystemDefaultRegistry
		c.Node = &node
	}
	return c, nil
}

// DatastoreKind is what keeps the cluster's state.
type DatastoreKind int

const (
	// EmbeddedSQLite, through kine, is the default: one server only.
	EmbeddedSQLite DatastoreKind = iota
	// EmbeddedEtcd runs an etcd member in every server.
	EmbeddedEtcd
	// External is a database given by --datastore-endpoint, through kine;
	// every server given the same one and token is part of the cluster.
	External
)

// Datastore is where the cluster's state lives.
type Datastore struct {
	Kind DatastoreKind
	// Endpoint is the kine endpoint of an External datastore, or a
	// SQLite file's outside the data dir.
	Endpoint string
	// CAFile, CertFile and KeyFile are kine's TLS files for Endpoint.
	CAFile, CertFile, KeyFile string
	// JoinURL is the running server an EmbeddedEtcd server joins; empty
	// for the first server and for every restart of a member.
	JoinURL string
}

// Shared reports whether several servers can run the cluster, so that
// its controllers must be leader-elected.
func (d Datastore) Shared() bool { return d.Kind != EmbeddedSQLite }

func (s *Server) datastore(paths layout.Layout) Datastore {
	d := Datastore{
		Endpoint: s.DatastoreEndpoint,
		CAFile:   s.DatastoreCAFile,
		CertFile: s.DatastoreCertFile,
		KeyFile:  s.DatastoreKeyFile,
		JoinURL:  s.ServerURL,
	}
	switch {
	case s.ClusterInit || s.ServerURL != "" || s.ClusterReset:
		d.Kind = EmbeddedEtcd
	case s.DatastoreEndpoint != "" && !strings.HasPrefix(s.DatastoreEndpoint, "sqlite://"):
		d.Kind = External
	case etcdMemberExists(paths.Server.EtcdDir):
		// A member restarted without the flags it was made with: starting
		// an empty SQLite cluster beside its data would look like data loss.
		d.Kind = EmbeddedEtcd
	}
	return d
}

// etcdMemberExists reports whether dir holds an etcd member's data; etcd
// keeps its write-ahead log in member/wal (pkg/etcd.HasData asks the same
// of etcd itself, which this package does not link).
func etcdMemberExists(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "member", "wal"))
	return err == nil && fi.IsDir()
}

// EtcdSnapshots schedules a server's snapshots of its etcd member.
type EtcdSnapshots struct {
	Disabled bool
	// Cron is the schedule as given, for logs; Schedule is it parsed.
	Cron      string
	Schedule  cron.Schedule
	Retention int
	Dir       string
}

func (s *Server) etcdSnapshots(paths layout.Layout) EtcdSnapshots {
	spec := s.EtcdSnapshotScheduleCron
	if spec == "" {
		spec = DefaultEtcdSnapshotCron
	}
	// Validate has accepted it.
	schedule, _ := parseCron(spec)
	dir := s.EtcdSnapshotDir
	if dir == "" {
		dir = paths.Server.SnapshotsDir
	}
	return EtcdSnapshots{Disabled: s.DisableEtcdSnapshots, Cron: spec, Schedule: schedule, Retention: s.EtcdSnapshotRetention, Dir: dir}
}

// Complete checks the agent's settings, reporting every problem at once,
// and returns its complete configuration.
func (a *Agent) Complete() (*CompletedAgent, error) {
	var errs []error
	if a.ServerURL == "" {
		errs = append(errs, errors.New("no server to join: pass --server https://SERVER:6443 (or set SKIFF_URL)"))
	} else if err := validateServerURL(a.ServerURL); err != nil {
		errs = append(errs, err)
	}
	if a.Token == "" {
		errs = append(errs, errors.New("no join token: pass --token (or set SKIFF_TOKEN); print it on the server with \"skiff token\""))
	}
	if err := ValidateDataDir(a.DataDir); err != nil {
		errs = append(errs, err)
	}
	if a.NodeIP != "" {
		if err := validateNodeIPs(a.NodeIP); err != nil {
			errs = append(errs, err)
		}
	}
	if err := a.ValidateNode(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	name, err := resolveNodeName(a.NodeName)
	if err != nil {
		return nil, err
	}
	lb := a.LoadBalancerAddress
	if lb == "" {
		lb = DefaultLoadBalancerAddress
	}
	return &CompletedAgent{
		Node:                a.Node.complete(layout.New(a.DataDir), name, resolveNodeIPs(parseNodeIPs(a.NodeIP)), a.Debug),
		ServerURL:           a.ServerURL,
		Token:               a.Token,
		LoadBalancerAddress: lb,
	}, nil
}

// complete turns validated node options into a CompletedNode.
func (n *Node) complete(paths layout.Layout, name string, ips []netip.Addr, debug bool) CompletedNode {
	return CompletedNode{
		Paths:             paths,
		Name:              name,
		IPs:               ips,
		ExternalIPs:       parseNodeIPs(n.NodeExternalIP),
		InternalDNS:       slices.Clone(n.NodeInternalDNS),
		ExternalDNS:       slices.Clone(n.NodeExternalDNS),
		Labels:            slices.Clone(n.NodeLabels),
		Taints:            slices.Clone(n.NodeTaints),
		KubeletFlags:      PassthroughFlags(n.ExtraKubeletArgs),
		KubeProxyFlags:    PassthroughFlags(n.ExtraKubeProxyArgs),
		KubeletRootDir:    n.kubeletRootDir(),
		KubeProxyMode:     passthroughValue(n.ExtraKubeProxyArgs, "proxy-mode"),
		FlannelBackend:    n.FlannelBackend,
		FlannelIface:      n.FlannelIface,
		Snapshotter:       n.Snapshotter,
		RegistriesFile:    n.RegistriesFile,
		NoDefaultEndpoint: n.NoDefaultEndpoint,
		DefaultRuntime:    n.DefaultRuntime,
		Debug:             debug,
	}
}

func validateServerURL(server string) error {
	if u, err := url.Parse(server); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("invalid --server %q; use the form https://SERVER:6443", server)
	}
	return nil
}
