package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/pkg/layout"
)

func defaultServer() *Server {
	return &Server{
		DataDir:        DefaultDataDir,
		BindAddress:    DefaultBindAddress,
		HTTPSPort:      DefaultHTTPSPort,
		ClusterCIDR:    DefaultClusterCIDR,
		ServiceCIDR:    DefaultServiceCIDR,
		ClusterDNS:     DefaultClusterDNS,
		ClusterDomain:  DefaultClusterDomain,
		KubeconfigPath: DefaultKubeconfig,
		KubeconfigMode: DefaultKubeconfigMode,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Server)
		// wantErr lists substrings of the error; empty means valid.
		wantErr []string
	}{
		{name: "defaults", modify: func(*Server) {}},
		{name: "valid everything set", modify: func(s *Server) {
			s.AdvertiseAddress = "192.168.1.10"
			s.NodeIP = "192.168.1.10, fd00::10"
			s.TLSSANs = []string{"skiff.example.com", "*.example.com", "10.0.0.1", "fd00::1", "localhost"}
			s.ClusterCIDR = "10.42.0.0/16,fd00:42::/56"
			s.ServiceCIDR = "10.43.0.0/16,fd00:43::/112"
			s.KubeconfigMode = "644"
		}},
		{name: "ipv6 only", modify: func(s *Server) {
			s.BindAddress = "::"
			s.ClusterCIDR = "fd00:42::/56"
			s.ServiceCIDR = "fd00:43::/108"
			s.ClusterDNS = "fd00:43::a"
		}},
		{name: "dns in secondary service range", modify: func(s *Server) {
			s.ServiceCIDR = "10.43.0.0/16,fd00:43::/112"
			s.ClusterDNS = "fd00:43::a"
		}},
		{name: "service cidr at /12 limit", modify: func(s *Server) { s.ServiceCIDR = "10.96.0.0/12"; s.ClusterDNS = "10.96.0.10" }},

		{name: "disable bundled addons", modify: func(s *Server) { s.Disable = []string{"coredns", "ingress"} }},
		{name: "disable a user's file", modify: func(s *Server) { s.Disable = []string{"ingress", "traefik"} }},
		{name: "disable a path", modify: func(s *Server) { s.Disable = []string{"../etc/passwd"} },
			wantErr: []string{`--disable value "../etc/passwd"`, "coredns, ingress"}},

		{name: "cluster init", modify: func(s *Server) { s.ClusterInit = true }},
		{name: "join an etcd cluster", modify: func(s *Server) { s.ServerURL = "https://192.0.2.1:6443"; s.Token = "secret" }},
		{name: "join without a token", modify: func(s *Server) { s.ServerURL = "https://192.0.2.1:6443" },
			wantErr: []string{"--server needs the cluster's token"}},
		{name: "cluster init and join", modify: func(s *Server) { s.ClusterInit = true; s.ServerURL = "https://192.0.2.1:6443"; s.Token = "secret" },
			wantErr: []string{"--cluster-init and --server both given"}},
		{name: "external datastore and cluster init", modify: func(s *Server) { s.ClusterInit = true; s.DatastoreEndpoint = "postgres://db/skiff" },
			wantErr: []string{"--datastore-endpoint cannot be combined with --cluster-init"}},
		{name: "datastore TLS without an endpoint", modify: func(s *Server) { s.DatastoreCAFile = "/etc/hostname" },
			wantErr: []string{"pass --datastore-endpoint too"}},
		{name: "datastore cert without key", modify: func(s *Server) {
			s.DatastoreEndpoint = "postgres://db/skiff"
			s.DatastoreCertFile = "/etc/hostname"
		}, wantErr: []string{"--datastore-certfile and --datastore-keyfile go together"}},
		{name: "datastore CA missing", modify: func(s *Server) {
			s.DatastoreEndpoint = "postgres://db/skiff"
			s.DatastoreCAFile = "/nonexistent/ca.pem"
		}, wantErr: []string{"--datastore-cafile /nonexistent/ca.pem cannot be read (no such file or directory)"}},

		{name: "default runtime", modify: func(s *Server) { s.Node.DefaultRuntime = "nvidia-experimental" }},
		{name: "default runtime not a handler name", modify: func(s *Server) { s.Node.DefaultRuntime = "/usr/bin/crun" },
			wantErr: []string{`invalid --default-runtime "/usr/bin/crun"`, "such as crun"}},
		{name: "default runtime upper case", modify: func(s *Server) { s.Node.DefaultRuntime = "Crun" },
			wantErr: []string{`invalid --default-runtime "Crun"`}},

		{name: "empty data dir", modify: func(s *Server) { s.DataDir = "" },
			wantErr: []string{"--data-dir", "empty", "absolute path"}},
		{name: "relative data dir", modify: func(s *Server) { s.DataDir = "var/lib/skiff" },
			wantErr: []string{`--data-dir "var/lib/skiff"`, "use an absolute path"}},
		{name: "port zero", modify: func(s *Server) { s.HTTPSPort = 0 },
			wantErr: []string{"--https-listen-port 0", "between 1 and 65535"}},
		{name: "port too high", modify: func(s *Server) { s.HTTPSPort = 65536 },
			wantErr: []string{"--https-listen-port 65536"}},
		{name: "bind address not ip", modify: func(s *Server) { s.BindAddress = "localhost" },
			wantErr: []string{`--bind-address "localhost"`, "not an IP address"}},
		{name: "bind address with zone", modify: func(s *Server) { s.BindAddress = "fe80::1%eth0" },
			wantErr: []string{"--bind-address"}},
		{name: "advertise address not ip", modify: func(s *Server) { s.AdvertiseAddress = "10.0.0" },
			wantErr: []string{`--advertise-address "10.0.0"`, "not an IP address"}},
		{name: "node ip not ip", modify: func(s *Server) { s.NodeIP = "node1" },
			wantErr: []string{`--node-ip "node1"`, "not an IP address"}},
		{name: "node ip empty element", modify: func(s *Server) { s.NodeIP = "10.0.0.1," },
			wantErr: []string{"--node-ip", "not an IP address"}},
		{name: "node ip two v4", modify: func(s *Server) { s.NodeIP = "10.0.0.1,10.0.0.2" },
			wantErr: []string{"--node-ip", "two IPv4 addresses"}},
		{name: "node ip two v6", modify: func(s *Server) { s.NodeIP = "fd00::1,fd00::2" },
			wantErr: []string{"--node-ip", "two IPv6 addresses"}},
		{name: "node ip three", modify: func(s *Server) { s.NodeIP = "10.0.0.1,fd00::1,10.0.0.2" },
			wantErr: []string{"--node-ip", "more than two"}},
		{name: "external ips", modify: func(s *Server) {
			s.Node.NodeExternalIP = "203.0.113.10,2001:db8::10"
			s.Node.NodeInternalDNS = []string{"node1.lan"}
			s.Node.NodeExternalDNS = []string{"node1.example.com", "Node1.Example.org"}
		}},
		{name: "external ip two v4", modify: func(s *Server) { s.Node.NodeExternalIP = "203.0.113.10,203.0.113.11" },
			wantErr: []string{`--node-external-ip "203.0.113.10,203.0.113.11"`, "two IPv4 addresses"}},
		{name: "external ip not ip", modify: func(s *Server) { s.Node.NodeExternalIP = "gateway" },
			wantErr: []string{`--node-external-ip "gateway"`, "not an IP address"}},
		{name: "internal dns not a name", modify: func(s *Server) { s.Node.NodeInternalDNS = []string{"a_b"} },
			wantErr: []string{`--node-internal-dns "a_b"`, "not a DNS name"}},
		{name: "external dns not a name", modify: func(s *Server) { s.Node.NodeExternalDNS = []string{"-x.example"} },
			wantErr: []string{`--node-external-dns "-x.example"`, "not a DNS name"}},
		{name: "system registry", modify: func(s *Server) { s.SystemDefaultRegistry = "registry.example:5000" }},
		{name: "system registry with scheme", modify: func(s *Server) { s.SystemDefaultRegistry = "https://registry.example" },
			wantErr: []string{`--system-default-registry "https://registry.example"`, "without a scheme or path"}},
		{name: "system registry with path", modify: func(s *Server) { s.SystemDefaultRegistry = "registry.example/team" },
			wantErr: []string{"--system-default-registry", "without a scheme or path"}},
		{name: "empty tls san", modify: func(s *Server) { s.TLSSANs = []string{"ok.example.com", ""} },
			wantErr: []string{`--tls-san ""`, "empty"}},
		{name: "tls san with space", modify: func(s *Server) { s.TLSSANs = []string{"a b"} },
			wantErr: []string{`--tls-san "a b"`, "whitespace"}},
		{name: "tls san bad name", modify: func(s *Server) { s.TLSSANs = []string{"-bad.example.com"} },
			wantErr: []string{`--tls-san "-bad.example.com"`, "neither an IP address nor a DNS name"}},
		{name: "tls san bad ip", modify: func(s *Server) { s.TLSSANs = []string{"10.0.0.256"} },
			wantErr: []string{`--tls-san "10.0.0.256"`}},
		{name: "cluster cidr bad prefix", modify: func(s *Server) { s.ClusterCIDR = "10.42.0.0/33" },
			wantErr: []string{`invalid --cluster-cidr "10.42.0.0/33": not a CIDR; use a form like 10.42.0.0/16`}},
		{name: "cluster cidr empty", modify: func(s *Server) { s.ClusterCIDR = "" },
			wantErr: []string{"--cluster-cidr", "empty"}},
		{name: "cluster cidr host bits", modify: func(s *Server) { s.ClusterCIDR = "10.42.0.1/16" },
			wantErr: []string{"--cluster-cidr", "host bits set", "use 10.42.0.0/16"}},
		{name: "cluster cidr two v4", modify: func(s *Server) { s.ClusterCIDR = "10.42.0.0/16,10.44.0.0/16" },
			wantErr: []string{"--cluster-cidr", "two IPv4 ranges"}},
		{name: "service cidr two v6", modify: func(s *Server) { s.ServiceCIDR = "fd00:43::/112,fd00:44::/112" },
			wantErr: []string{"--service-cidr", "two IPv6 ranges"}},
		{name: "service cidr three", modify: func(s *Server) { s.ServiceCIDR = "10.43.0.0/16,fd00:43::/112,10.45.0.0/16" },
			wantErr: []string{"--service-cidr", "more than two"}},
		{name: "service cidr not cidr", modify: func(s *Server) { s.ServiceCIDR = "10.43.0.0" },
			wantErr: []string{`invalid --service-cidr "10.43.0.0": not a CIDR; use a form like 10.43.0.0/16`}},
		{name: "service cidr v4 too large", modify: func(s *Server) {
			s.ServiceCIDR = "10.0.0.0/8"
			s.ClusterCIDR = "172.16.0.0/16"
			s.ClusterDNS = "10.0.0.10"
		},
			wantErr: []string{"--service-cidr", "too large", "/12"}},
		{name: "service cidr v6 too large", modify: func(s *Server) { s.ServiceCIDR = "fd00:43::/64" },
			wantErr: []string{"--service-cidr", "too large", "/108"}},
		{name: "service cidr too small", modify: func(s *Server) { s.ServiceCIDR = "10.43.0.0/31" },
			wantErr: []string{"--service-cidr", "too small"}},
		{name: "cidrs overlap", modify: func(s *Server) { s.ServiceCIDR = "10.42.128.0/17"; s.ClusterDNS = "10.42.128.10" },
			wantErr: []string{"--cluster-cidr 10.42.0.0/16 overlaps --service-cidr 10.42.128.0/17"}},
		{name: "cidrs identical", modify: func(s *Server) { s.ServiceCIDR = DefaultClusterCIDR; s.ClusterDNS = "10.42.0.10" },
			wantErr: []string{"overlaps"}},
		{name: "cluster dns not ip", modify: func(s *Server) { s.ClusterDNS = "dns" },
			wantErr: []string{`--cluster-dns "dns"`, "not an IP address", "10.43.0.10"}},
		{name: "cluster dns outside service cidr", modify: func(s *Server) { s.ClusterDNS = "10.44.0.10" },
			wantErr: []string{`--cluster-dns "10.44.0.10"`, "not inside --service-cidr 10.43.0.0/16"}},
		{name: "cluster dns is kubernetes service", modify: func(s *Server) { s.ClusterDNS = "10.43.0.1" },
			wantErr: []string{`--cluster-dns "10.43.0.1"`, "first address", "kubernetes"}},
		{name: "cluster dns is network address", modify: func(s *Server) { s.ClusterDNS = "10.43.0.0" },
			wantErr: []string{`--cluster-dns "10.43.0.0"`, "network address"}},
		{name: "cluster dns is broadcast", modify: func(s *Server) { s.ClusterDNS = "10.43.255.255" },
			wantErr: []string{`--cluster-dns "10.43.255.255"`, "broadcast"}},
		{name: "cluster domain uppercase", modify: func(s *Server) { s.ClusterDomain = "Cluster.Local" },
			wantErr: []string{`--cluster-domain "Cluster.Local"`, "cluster.local"}},
		{name: "cluster domain trailing dot", modify: func(s *Server) { s.ClusterDomain = "cluster.local." },
			wantErr: []string{"--cluster-domain"}},
		{name: "cluster domain empty", modify: func(s *Server) { s.ClusterDomain = "" },
			wantErr: []string{"--cluster-domain"}},
		{name: "kubeconfig mode not octal", modify: func(s *Server) { s.KubeconfigMode = "0999" },
			wantErr: []string{`--write-kubeconfig-mode "0999"`, "not an octal file mode"}},
		{name: "kubeconfig mode too large", modify: func(s *Server) { s.KubeconfigMode = "1777" },
			wantErr: []string{`--write-kubeconfig-mode "1777"`, "0777"}},
		{name: "kubeconfig mode empty", modify: func(s *Server) { s.KubeconfigMode = "" },
			wantErr: []string{"--write-kubeconfig-mode", "empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultServer()
			tt.modify(s)
			err := s.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Validate() = %q, want a single line", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	s := defaultServer()
	s.HTTPSPort = 0
	s.ClusterDomain = "Not A Domain"
	s.Disable = []string{"../x"}
	err := s.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, want := range []string{"--https-listen-port", "--cluster-domain", "--disable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, want every problem, %s among them", err, want)
		}
	}
}

func TestDatastoreKind(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Server)
		want   DatastoreKind
		shared bool
	}{
		{"default", func(*Server) {}, EmbeddedSQLite, false},
		{"SQLite elsewhere", func(s *Server) { s.DatastoreEndpoint = "sqlite:///srv/state.db" }, EmbeddedSQLite, false},
		{"PostgreSQL", func(s *Server) { s.DatastoreEndpoint = "postgres://db/skiff" }, External, true},
		{"cluster init", func(s *Server) { s.ClusterInit = true }, EmbeddedEtcd, true},
		{"joining", func(s *Server) { s.ServerURL = "https://192.0.2.1:6443"; s.Token = "t0ken-secret" }, EmbeddedEtcd, true},
		{"restarted member without its flags", func(s *Server) {
			s.DataDir = t.TempDir()
			if err := os.MkdirAll(filepath.Join(layout.New(s.DataDir).Server.EtcdDir, "member", "wal"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, EmbeddedEtcd, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultServer()
			s.NodeName, s.NodeIP = "n1", "192.0.2.5"
			tc.modify(s)
			c, err := s.Complete()
			if err != nil {
				t.Fatal(err)
			}
			if c.Datastore.Kind != tc.want || c.Datastore.Shared() != tc.shared {
				t.Fatalf("kind %v shared %v, want %v %v", c.Datastore.Kind, c.Datastore.Shared(), tc.want, tc.shared)
			}
		})
	}
}

func TestKubeconfigMode(t *testing.T) {
	tests := []struct {
		in      string
		want    os.FileMode
		wantErr bool
	}{
		{in: "0600", want: 0o600},
		{in: "644", want: 0o644},
		{in: "0777", want: 0o777},
		{in: "0", want: 0},
		{in: "0o600", wantErr: true},
		{in: "rw-------", wantErr: true},
		{in: "01000", wantErr: true},
		{in: "-600", wantErr: true},
	}
	for _, tt := range tests {
		s := defaultServer()
		s.NodeIP = "192.0.2.1"
		s.KubeconfigMode = tt.in
		got, err := s.Complete()
		if (err != nil) != tt.wantErr {
			t.Errorf("mode %q: error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "--write-kubeconfig-mode") {
				t.Errorf("mode %q: error %q does not name the flag", tt.in, err)
			}
			continue
		}
		if got.KubeconfigMode != tt.want {
			t.Errorf("mode %q = %o, want %o", tt.in, got.KubeconfigMode, tt.want)
		}
	}
}

func TestCompletedCluster(t *testing.T) {
	tests := []struct {
		serviceCIDR, clusterCIDR, dns string
		wantAPI                       string
		wantServices, wantClusters    string
	}{
		{"10.43.0.0/16", "10.42.0.0/16", "10.43.0.10", "10.43.0.1", "10.43.0.0/16", "10.42.0.0/16"},
		{"10.96.0.0/12", "10.42.0.0/16", "10.96.0.10", "10.96.0.1", "10.96.0.0/12", "10.42.0.0/16"},
		{"fd00:43::/112,10.43.0.0/16", "fd00:42::/56,10.42.0.0/16", "fd00:43::a", "fd00:43::1", "fd00:43::/112,10.43.0.0/16", "fd00:42::/56,10.42.0.0/16"},
		{"10.43.0.0/16, fd00:43::/112", "10.42.0.0/16", "10.43.0.10", "10.43.0.1", "10.43.0.0/16,fd00:43::/112", "10.42.0.0/16"},
	}
	for _, tt := range tests {
		s := defaultServer()
		s.NodeIP = "192.0.2.1"
		s.ServiceCIDR, s.ClusterCIDR, s.ClusterDNS = tt.serviceCIDR, tt.clusterCIDR, tt.dns
		c, err := s.Complete()
		if err != nil {
			t.Errorf("%s: %v", tt.serviceCIDR, err)
			continue
		}
		if c.Cluster.APIServiceIP.String() != tt.wantAPI || c.Cluster.ServiceCIDRList() != tt.wantServices ||
			c.Cluster.ClusterCIDRList() != tt.wantClusters || c.Cluster.ClusterDNS.String() != tt.dns {
			t.Errorf("%s: cluster = %+v", tt.serviceCIDR, c.Cluster)
		}
	}
}

func TestCompleteServer(t *testing.T) {
	s := defaultServer()
	s.NodeIP = "192.168.1.10, fd00::10"
	s.NodeName = "Node-A"
	s.TLSSANs = []string{"10.0.0.5", "skiff.example.com"}
	s.ExtraAPIServerArgs = []string{"v=2"}
	s.Node.ExtraKubeletArgs = []string{"v=2", "root-dir=/srv/a", "--root-dir=/srv/kubelet"}
	s.Node.ExtraKubeProxyArgs = []string{"proxy-mode=nftables"}
	s.Node.NodeExternalIP = "203.0.113.10"
	s.Node.DefaultRuntime = "crun"
	s.SystemDefaultRegistry = "registry.example:5000"
	c, err := s.Complete()
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "node-a" || len(c.NodeIPs) != 2 || c.NodeIPs[0] != netip.MustParseAddr("192.168.1.10") || c.NodeIPs[1] != netip.MustParseAddr("fd00::10") {
		t.Errorf("identity: %q %v", c.NodeName, c.NodeIPs)
	}
	if c.AdvertiseAddress != c.NodeIPs[0] {
		t.Errorf("advertise address %v, want the first node IP", c.AdvertiseAddress)
	}
	if len(c.SANIPs) != 1 || c.SANIPs[0].String() != "10.0.0.5" || len(c.SANNames) != 1 || c.SANNames[0] != "skiff.example.com" {
		t.Errorf("SANs: %v %v", c.SANIPs, c.SANNames)
	}
	if c.FlannelBackend != DefaultFlannelBackend || c.LocalStoragePath != c.Paths.StorageDir || c.Paths.DataDir != DefaultDataDir {
		t.Errorf("defaults: %q %q %q", c.FlannelBackend, c.LocalStoragePath, c.Paths.DataDir)
	}
	if len(c.APIServerFlags) != 1 || c.APIServerFlags[0] != "--v=2" {
		t.Errorf("apiserver flags %q", c.APIServerFlags)
	}
	n := c.Node
	if n == nil {
		t.Fatal("no node although the agent is enabled")
	}
	// The last root-dir wins, as for the kubelet itself.
	if n.KubeletRootDir != "/srv/kubelet" || n.KubeProxyMode != "nftables" || n.Name != "node-a" || n.FlannelBackend != DefaultFlannelBackend || n.DefaultRuntime != "crun" {
		t.Errorf("node: %+v", n)
	}
	if ips := n.CertificateIPs(); len(ips) != 3 || ips[2].String() != "203.0.113.10" {
		t.Errorf("certificate IPs %v", ips)
	}
	// The server's own node knows the cluster's system registry.
	if n.SystemDefaultRegistry != "registry.example:5000" || c.SystemDefaultRegistry != "registry.example:5000" {
		t.Errorf("system default registry: node %q, server %q", n.SystemDefaultRegistry, c.SystemDefaultRegistry)
	}

	s.DisableAgent = true
	s.AdvertiseAddress = "192.0.2.7"
	c, err = s.Complete()
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != nil || c.AdvertiseAddress.String() != "192.0.2.7" {
		t.Errorf("--disable-agent: node %v, advertise %v", c.Node, c.AdvertiseAddress)
	}
}

func TestNodeDefaults(t *testing.T) {
	c, err := (&Agent{DataDir: DefaultDataDir, ServerURL: "https://192.0.2.1:6443", Token: "secret", NodeIP: "192.0.2.5", NodeName: "a"}).Complete()
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.KubeletRootDir != "/var/lib/kubelet" || c.Node.KubeProxyMode != "" || c.Node.FlannelBackend != "" || c.LoadBalancerAddress != DefaultLoadBalancerAddress {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestCompleteAgentReportsEveryProblem(t *testing.T) {
	_, err := (&Agent{DataDir: "relative", NodeIP: "nope", ServerURL: "http://x", Node: Node{FlannelBackend: "ipip"}}).Complete()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"--data-dir", "--node-ip", "--server", "no join token", "--flannel-backend"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
