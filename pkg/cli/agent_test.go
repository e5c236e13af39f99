package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/pkg/config"
)

func TestAgentFromEnvironmentAndFlags(t *testing.T) {
	isolate(t)
	t.Setenv("SKIFF_URL", "https://10.0.0.1:6443")
	t.Setenv("SKIFF_TOKEN", "K10abc::server:secret")
	t.Setenv("SKIFF_DEFAULT_RUNTIME", "nvidia")
	r := run(t, "agent", "--config", "", "--node-ip", "10.0.0.2", "--node-external-ip", "203.0.113.9,2001:db8::9", "--node-external-dns", "a.example,b.example", "--disable-default-registry-endpoint", "--node-label", "disktype=hdd", "--kubelet-arg", "max-pods=20")
	if r.code != 0 || r.rec.agentCfg == nil {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	c := r.rec.agentCfg
	got := fmt.Sprintf("%q %q %v %q %v %s %s %s %s %s %v %s", c.Node.Labels, c.Node.KubeletFlags, c.Node.ExternalIPs, c.Node.ExternalDNS, c.Node.NoDefaultEndpoint, c.Node.RegistriesFile, c.Node.DefaultRuntime,
		c.Node.Paths.DataDir, c.ServerURL, c.Token, c.Node.IPs, c.LoadBalancerAddress)
	want := fmt.Sprintf(`["disktype=hdd"] ["--max-pods=20"] [203.0.113.9 2001:db8::9] ["a.example" "b.example"] true %s nvidia %s https://10.0.0.1:6443 K10abc::server:secret [10.0.0.2] %s`,
		config.DefaultRegistriesFile, config.DefaultDataDir, config.DefaultLoadBalancerAddress)
	if got != want {
		t.Errorf("config = %s\nwant %s", got, want)
	}
}

func TestAgentConfigFileSharedWithServer(t *testing.T) {
	isolate(t)
	// One file can hold server-only and agent-only keys; each command takes
	// the keys it knows.
	path := writeFile(t, "config.yaml", "server: https://s.example:6443\ntoken: t0k\ncluster-cidr: 10.42.0.0/16\n")
	r := run(t, "agent", "--config", path)
	if r.code != 0 {
		t.Fatalf("agent: exit %d: %s", r.code, r.stderr)
	}
	if got := r.rec.agentCfg.ServerURL; got != "https://s.example:6443" {
		t.Errorf("server URL %q from the config file", got)
	}
	if r := run(t, "server", "--config", path); r.code != 0 {
		t.Fatalf("server with agent keys in the file: exit %d: %s", r.code, r.stderr)
	}
}

func TestAgentErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--config", "", "--token", "x"}, "no server to join: pass --server"},
		{[]string{"agent", "--config", "", "--server", "http://s:6443", "--token", "x"}, `invalid --server "http://s:6443"; use the form https://SERVER:6443`},
		{[]string{"agent", "--config", "", "--server", "https://s:6443"}, "no join token: pass --token"},
		{[]string{"agent", "--config", "", "--server", "https://s:6443", "--token", "x", "--node-ip", "nope"}, `invalid --node-ip "nope"`},
		{[]string{"agent", "--config", "", "--server", "https://s:6443", "--token", "x", "--node-taint", "a=b"}, `invalid --node-taint "a=b"`},
		{[]string{"agent", "--config", "", "--server", "https://s:6443", "--token", "x", "--node-external-ip", "nat"}, `invalid --node-external-ip "nat"`},
		{[]string{"agent", "--config", "", "--server", "https://s:6443", "--token", "x", "--default-runtime", "/usr/bin/crun"}, `invalid --default-runtime "/usr/bin/crun"`},
		{[]string{"agent", "--config", "", "--server", "https://s:6443", "--token", "x", "--cluster-cidr", "10.0.0.0/8"}, "unknown flag --cluster-cidr"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[3:], " "), func(t *testing.T) {
			isolate(t)
			r := run(t, tt.args...)
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want one line containing %q", r.code, r.stderr, tt.want)
			}
			if r.rec.agentCfg != nil {
				t.Error("the agent ran despite the error")
			}
		})
	}
}
