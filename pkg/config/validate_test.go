package config

import (
	"net"
	"os"
	"strings"
	"testing"
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

func TestKubeconfigFileMode(t *testing.T) {
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
		s := &Server{KubeconfigMode: tt.in}
		got, err := s.KubeconfigFileMode()
		if (err != nil) != tt.wantErr {
			t.Errorf("KubeconfigFileMode(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("KubeconfigFileMode(%q) = %o, want %o", tt.in, got, tt.want)
		}
	}
}

func TestKubernetesServiceIP(t *testing.T) {
	tests := []struct {
		cidr    string
		want    string
		wantErr bool
	}{
		{cidr: "10.43.0.0/16", want: "10.43.0.1"},
		{cidr: "10.96.0.0/12", want: "10.96.0.1"},
		{cidr: "fd00:43::/112,10.43.0.0/16", want: "fd00:43::1"},
		{cidr: "10.43.0.0/16,fd00:43::/112", want: "10.43.0.1"},
		{cidr: "bogus", wantErr: true},
		{cidr: "", wantErr: true},
	}
	for _, tt := range tests {
		s := &Server{ServiceCIDR: tt.cidr}
		got, err := s.KubernetesServiceIP()
		if (err != nil) != tt.wantErr {
			t.Errorf("KubernetesServiceIP(%q) error = %v, wantErr %v", tt.cidr, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !got.Equal(net.ParseIP(tt.want)) {
			t.Errorf("KubernetesServiceIP(%q) = %v, want %v", tt.cidr, got, tt.want)
		}
	}
}

func TestNodeIPs(t *testing.T) {
	if got := (&Server{}).NodeIPs(); got != nil {
		t.Errorf("NodeIPs() with no node IP = %v, want nil", got)
	}
	got := (&Server{NodeIP: "192.168.1.10, fd00::10"}).NodeIPs()
	want := []net.IP{net.ParseIP("192.168.1.10"), net.ParseIP("fd00::10")}
	if len(got) != len(want) {
		t.Fatalf("NodeIPs() = %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("NodeIPs()[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestSettingsFromPassthroughArgs(t *testing.T) {
	n := &Node{}
	if n.KubeletRootDir() != "/var/lib/kubelet" || n.KubeProxyMode() != "" {
		t.Fatalf("defaults: %q %q", n.KubeletRootDir(), n.KubeProxyMode())
	}
	n.ExtraKubeletArgs = []string{"v=2", "root-dir=/srv/a", "--root-dir=/srv/kubelet"}
	n.ExtraKubeProxyArgs = []string{"proxy-mode=nftables"}
	if n.KubeletRootDir() != "/srv/kubelet" || n.KubeProxyMode() != "nftables" {
		t.Fatalf("from the args (the last wins): %q %q", n.KubeletRootDir(), n.KubeProxyMode())
	}
}

func TestAgentFields(t *testing.T) {
	ips, err := AgentFields("/var/lib/skiff", "192.0.2.5,fd00::5")
	if err != nil || len(ips) != 2 || ips[0].String() != "192.0.2.5" {
		t.Fatalf("%v %v", ips, err)
	}
	_, err = AgentFields("relative", "nope")
	if err == nil || !strings.Contains(err.Error(), "--data-dir") || !strings.Contains(err.Error(), "--node-ip") {
		t.Fatalf("both problems at once: %v", err)
	}
}
