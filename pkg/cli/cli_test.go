package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

// recorder stands in for cmd/skiff's entry points.
type recorder struct {
	serverCalls int
	cfg         *config.CompletedServer
	ctx         context.Context
	kubectlArgs []string
	kubectlRan  bool
	local       Local
	agentCfg    *config.CompletedAgent
	clusterReq  *config.ClusterRequest
}

func (r *recorder) actions() Actions {
	return Actions{
		Server: func(ctx context.Context, cfg *config.CompletedServer) error {
			r.serverCalls++
			r.ctx, r.cfg = ctx, cfg
			return nil
		},
		Agent: func(_ context.Context, cfg *config.CompletedAgent) error {
			r.agentCfg = cfg
			return nil
		},
		Cluster: func(_ context.Context, req *config.ClusterRequest) error {
			r.clusterReq = req
			return nil
		},
		Kubectl: func(l Local, args []string) error {
			r.kubectlRan = true
			r.kubectlArgs = args
			r.local = l
			return nil
		},
	}
}

type result struct {
	code           int
	stdout, stderr string
	rec            *recorder
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	rec := &recorder{}
	var stdout, stderr bytes.Buffer
	code := RunWithOutput(context.Background(), append([]string{"skiff"}, args...), rec.actions(), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String(), rec: rec}
}

// isolate clears SKIFF_* variables from the test's environment and, unless
// the test cares about the default path, points the config file at nothing.
func isolate(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SKIFF_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustSucceed(t *testing.T, r result) *config.CompletedServer {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d, stderr: %s", r.code, r.stderr)
	}
	if r.rec.serverCalls != 1 {
		t.Fatalf("server action called %d times, want 1", r.rec.serverCalls)
	}
	return r.rec.cfg
}

func TestServerDefaults(t *testing.T) {
	isolate(t)
	if _, err := os.Stat(config.DefaultConfigFile); err == nil {
		t.Skipf("%s exists on this machine and would change the defaults", config.DefaultConfigFile)
	}
	cfg := mustSucceed(t, run(t, "server"))
	got := fmt.Sprintf("%s %s %d %s %s %s %s %s %s %o %s %s",
		cfg.Paths.DataDir, cfg.BindAddress, cfg.HTTPSPort, cfg.Cluster.ClusterCIDRList(), cfg.Cluster.ServiceCIDRList(),
		cfg.Cluster.ClusterDNS, cfg.Cluster.ClusterDomain, cfg.Cluster.APIServiceIP, cfg.KubeconfigPath, cfg.KubeconfigMode,
		cfg.FlannelBackend, cfg.LocalStoragePath)
	want := fmt.Sprintf("%s %s %d %s %s %s %s 10.43.0.1 %s 600 %s %s",
		config.DefaultDataDir, config.DefaultBindAddress, config.DefaultHTTPSPort, config.DefaultClusterCIDR, config.DefaultServiceCIDR,
		config.DefaultClusterDNS, config.DefaultClusterDomain, config.DefaultKubeconfig, config.DefaultFlannelBackend, cfg.Paths.StorageDir)
	if got != want {
		t.Errorf("config = %s\nwant %s", got, want)
	}
	if cfg.Node == nil || cfg.Node.RegistriesFile != config.DefaultRegistriesFile || cfg.Node.Name != cfg.NodeName || len(cfg.NodeIPs) == 0 {
		t.Errorf("node = %+v", cfg.Node)
	}
}

// sans lists the --tls-san values: names, then addresses.
func sans(cfg *config.CompletedServer) []string {
	var out []string
	out = append(out, cfg.SANNames...)
	for _, ip := range cfg.SANIPs {
		out = append(out, ip.String())
	}
	return out
}

func TestServerPassesContext(t *testing.T) {
	isolate(t)
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "marker")
	rec := &recorder{}
	var out bytes.Buffer
	if code := RunWithOutput(ctx, []string{"skiff", "server", "--config="}, rec.actions(), &out, &out); code != 0 {
		t.Fatalf("exit code %d: %s", code, out.String())
	}
	if rec.ctx == nil || rec.ctx.Value(key{}) != "marker" {
		t.Errorf("server action did not receive the caller's context")
	}
}

func TestServerAllFlags(t *testing.T) {
	isolate(t)
	cfg := mustSucceed(t, run(t, "server",
		"--config", "",
		"-d", "/srv/skiff",
		"--bind-address", "127.0.0.1",
		"--https-listen-port", "7443",
		"--advertise-address", "192.168.1.10",
		"--node-ip", "192.168.1.10,fd00::10",
		"--node-name", "n1",
		"--tls-san", "a.example.com",
		"--tls-san", "b.example.com,10.0.0.1",
		"--cluster-cidr", "10.52.0.0/16",
		"--service-cidr", "10.53.0.0/16",
		"--cluster-dns", "10.53.0.10",
		"--cluster-domain", "example.internal",
		"-t", "secret",
		"-o", "/tmp/kubeconfig.yaml",
		"--write-kubeconfig-mode", "644",
		"--datastore-endpoint", "postgres://db/skiff",
		"--kube-apiserver-arg", "v=2",
		"--kube-controller-manager-arg", "node-monitor-period=2s",
		"--kube-scheduler-arg", "v=4",
		"--debug",
		"--node-label", "disktype=ssd,zone=a",
		"--node-taint", "dedicated=db:NoSchedule",
		"--kubelet-arg", "max-pods=50",
		"--kube-proxy-arg", "proxy-mode=nftables",
		"--flannel-backend", "host-gw",
		"--flannel-iface", "eth1",
		"--snapshotter", "native",
		"--registries", "/srv/registries.yaml",
		"--default-runtime", "crun",
	))
	got := fmt.Sprintf("%s %s %d %s %s %s %v %v %s %s %s %s %s %s %o %s %q %q %q %v",
		cfg.Paths.DataDir, cfg.BindAddress, cfg.HTTPSPort, cfg.AdvertiseAddress, cfg.NodeName, cfg.NodeIPs, sans(cfg),
		cfg.Cluster.ClusterCIDRList(), cfg.Cluster.ServiceCIDRList(), cfg.Cluster.ClusterDNS, cfg.Cluster.ClusterDomain,
		cfg.Token, cfg.KubeconfigPath, cfg.Datastore.Endpoint, cfg.KubeconfigMode, cfg.FlannelBackend,
		cfg.APIServerFlags, cfg.ControllerManagerFlags, cfg.SchedulerFlags, cfg.Debug)
	want := `/srv/skiff 127.0.0.1 7443 192.168.1.10 n1 [192.168.1.10 fd00::10] [a.example.com b.example.com 10.0.0.1] ` +
		`10.52.0.0/16 10.53.0.0/16 10.53.0.10 example.internal secret /tmp/kubeconfig.yaml postgres://db/skiff 644 host-gw ` +
		`["--v=2"] ["--node-monitor-period=2s"] ["--v=4"] true`
	if got != want {
		t.Errorf("config = %s\nwant %s", got, want)
	}
	n := cfg.Node
	got = fmt.Sprintf("%s %v %q %q %q %q %s %s %s %s %s %s %s", n.Name, n.IPs, n.Labels, n.Taints, n.KubeletFlags, n.KubeProxyFlags,
		n.KubeProxyMode, n.FlannelBackend, n.FlannelIface, n.Snapshotter, n.RegistriesFile, n.DefaultRuntime, n.Paths.DataDir)
	want = `n1 [192.168.1.10 fd00::10] ["disktype=ssd" "zone=a"] ["dedicated=db:NoSchedule"] ["--max-pods=50"] ["--proxy-mode=nftables"] ` +
		`nftables host-gw eth1 native /srv/registries.yaml crun /srv/skiff`
	if got != want {
		t.Errorf("node = %s\nwant %s", got, want)
	}
}

func TestPrecedence(t *testing.T) {
	file := "cluster-dns: 10.43.0.20\ntls-san: [file.example.com, 10.0.0.1]\n"
	tests := []struct {
		name    string
		useFile bool
		env     map[string]string
		flags   []string
		wantDNS string
		wantSAN []string
	}{
		{name: "default", wantDNS: config.DefaultClusterDNS, wantSAN: nil},
		{name: "file beats default", useFile: true,
			wantDNS: "10.43.0.20", wantSAN: []string{"file.example.com", "10.0.0.1"}},
		{name: "env beats file", useFile: true,
			env:     map[string]string{"SKIFF_CLUSTER_DNS": "10.43.0.30", "SKIFF_TLS_SAN": "env.example.com"},
			wantDNS: "10.43.0.30", wantSAN: []string{"env.example.com"}},
		{name: "flag beats env and file", useFile: true,
			env:     map[string]string{"SKIFF_CLUSTER_DNS": "10.43.0.30", "SKIFF_TLS_SAN": "env.example.com"},
			flags:   []string{"--cluster-dns", "10.43.0.40", "--tls-san", "flag.example.com", "--tls-san", "flag2.example.com"},
			wantDNS: "10.43.0.40", wantSAN: []string{"flag.example.com", "flag2.example.com"}},
		{name: "flag beats file", useFile: true,
			flags:   []string{"--cluster-dns=10.43.0.40", "--tls-san=flag.example.com"},
			wantDNS: "10.43.0.40", wantSAN: []string{"flag.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			args := []string{"server"}
			if tt.useFile {
				t.Setenv("SKIFF_CONFIG_FILE", writeFile(t, "config.yaml", file))
			} else {
				args = append(args, "--config=")
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg := mustSucceed(t, run(t, append(args, tt.flags...)...))
			if cfg.Cluster.ClusterDNS.String() != tt.wantDNS {
				t.Errorf("ClusterDNS = %s, want %s", cfg.Cluster.ClusterDNS, tt.wantDNS)
			}
			if !reflect.DeepEqual(sans(cfg), tt.wantSAN) {
				t.Errorf("TLS SANs = %q, want %q", sans(cfg), tt.wantSAN)
			}
		})
	}
}

func TestEnvDataDir(t *testing.T) {
	isolate(t)
	t.Setenv("SKIFF_DATA_DIR", "/srv/from-env")
	cfg := mustSucceed(t, run(t, "server", "--config="))
	if cfg.Paths.DataDir != "/srv/from-env" {
		t.Errorf("DataDir = %q, want /srv/from-env", cfg.Paths.DataDir)
	}
}

func TestConfigDropIns(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(path, "data-dir: /srv/main\ntls-san: [a.example]\nnode-label: [zone=a]\n")
	// Lexical order: 10 before 20; 20 replaces a key 10 set, and adds to
	// a list with key+.
	write(filepath.Join(dir, "config.yaml.d", "20-b.yaml"), "data-dir: /srv/b\ntls-san+: [c.example]\n")
	write(filepath.Join(dir, "config.yaml.d", "10-a.yaml"), "data-dir: /srv/a\ntls-san+: b.example\nnode-label: [zone=b]\n")
	write(filepath.Join(dir, "config.yaml.d", "notes.txt"), "not: yaml: at all")
	cfg := mustSucceed(t, run(t, "server", "-c", path))
	if cfg.Paths.DataDir != "/srv/b" {
		t.Errorf("DataDir = %q, want the last drop-in's", cfg.Paths.DataDir)
	}
	if !reflect.DeepEqual(sans(cfg), []string{"a.example", "b.example", "c.example"}) {
		t.Errorf("TLS SANs = %q, want config.yaml's with each drop-in's appended", sans(cfg))
	}
	if !reflect.DeepEqual(cfg.Node.Labels, []string{"zone=b"}) {
		t.Errorf("node labels = %q, want 10-a.yaml's to replace config.yaml's", cfg.Node.Labels)
	}
	// A flag still wins over every file.
	if cfg := mustSucceed(t, run(t, "server", "-c", path, "--data-dir", "/srv/flag")); cfg.Paths.DataDir != "/srv/flag" {
		t.Errorf("DataDir = %q, want the flag's", cfg.Paths.DataDir)
	}

	// Each drop-in is checked on its own, with its name and line.
	write(filepath.Join(dir, "config.yaml.d", "30-c.yaml"), "\n\nno-such-flag: 1\n")
	r := run(t, "server", "-c", path)
	if r.code != 1 || !strings.Contains(r.stderr, "30-c.yaml") || !strings.Contains(r.stderr, `"no-such-flag"`) {
		t.Errorf("unknown key in a drop-in: code %d, stderr %q", r.code, r.stderr)
	}
	write(filepath.Join(dir, "config.yaml.d", "30-c.yaml"), "data-dir+: /srv/c\n")
	r = run(t, "server", "-c", path)
	if r.code != 1 || !strings.Contains(r.stderr, "30-c.yaml: line 1") || !strings.Contains(r.stderr, "appends to a list") {
		t.Errorf("key+ on a single value: code %d, stderr %q", r.code, r.stderr)
	}
}

func TestConfigFileValueTypes(t *testing.T) {
	isolate(t)
	path := writeFile(t, "config.yaml", `# every kind of flag
data-dir: /srv/file
https-listen-port: 7443
disable-agent: true
debug: "true"
write-kubeconfig-mode: 0644
tls-san: single.example.com
kube-apiserver-arg:
  - enable-admission-plugins=NodeRestriction,PodSecurity
  - v=2
node-name:
`)
	cfg := mustSucceed(t, run(t, "server", "-c", path))
	host, _ := os.Hostname()
	switch {
	case cfg.Paths.DataDir != "/srv/file":
		t.Errorf("DataDir = %q", cfg.Paths.DataDir)
	case cfg.HTTPSPort != 7443:
		t.Errorf("HTTPSPort = %d", cfg.HTTPSPort)
	case cfg.Node != nil || !cfg.Debug:
		t.Errorf("node = %v, Debug = %v, want no node and debug", cfg.Node, cfg.Debug)
	case cfg.KubeconfigMode != 0o644:
		t.Errorf("KubeconfigMode = %o, want 0644", cfg.KubeconfigMode)
	case !reflect.DeepEqual(sans(cfg), []string{"single.example.com"}):
		t.Errorf("TLS SANs = %q", sans(cfg))
	case !reflect.DeepEqual(cfg.APIServerFlags, []string{"--enable-admission-plugins=NodeRestriction,PodSecurity", "--v=2"}):
		t.Errorf("apiserver flags = %q", cfg.APIServerFlags)
	case cfg.NodeName != strings.ToLower(host):
		t.Errorf("NodeName = %q, want the host name for a null value", cfg.NodeName)
	}
}

func TestPassthroughArgsKeepCommas(t *testing.T) {
	isolate(t)
	t.Setenv("SKIFF_KUBE_SCHEDULER_ARG", "feature-gates=A=true,B=false")
	cfg := mustSucceed(t, run(t, "server", "--config=",
		"--kube-apiserver-arg=a=b,c",
		"--kube-apiserver-arg", "enable-admission-plugins=A,B",
		"--kube-controller-manager-arg=controllers=*,-foo"))
	if want := []string{"--a=b,c", "--enable-admission-plugins=A,B"}; !reflect.DeepEqual(cfg.APIServerFlags, want) {
		t.Errorf("apiserver flags = %q, want %q", cfg.APIServerFlags, want)
	}
	if want := []string{"--controllers=*,-foo"}; !reflect.DeepEqual(cfg.ControllerManagerFlags, want) {
		t.Errorf("controller-manager flags = %q, want %q", cfg.ControllerManagerFlags, want)
	}
	if want := []string{"--feature-gates=A=true,B=false"}; !reflect.DeepEqual(cfg.SchedulerFlags, want) {
		t.Errorf("scheduler flags = %q, want %q", cfg.SchedulerFlags, want)
	}
}

func TestTokenFile(t *testing.T) {
	isolate(t)
	path := writeFile(t, "token", "\n  K10abc::server:secret \n\n")
	cfg := mustSucceed(t, run(t, "server", "--config=", "--token-file", path))
	if cfg.Token != "K10abc::server:secret" {
		t.Errorf("Token = %q, want the trimmed file content", cfg.Token)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		config string // written to a temp file passed with --config when set
		want   []string
	}{
		{name: "unknown flag", args: []string{"server", "--bogus-flag"},
			want: []string{"skiff server:", "--bogus-flag"}},
		{name: "unknown root flag", args: []string{"--bogus-flag", "server"},
			want: []string{"skiff:", "--bogus-flag"}},
		{name: "bad int value", args: []string{"server", "--https-listen-port", "abc"},
			want: []string{"skiff server:", "https-listen-port"}},
		{name: "bad env value", args: []string{"server"}, env: map[string]string{"SKIFF_HTTPS_LISTEN_PORT": "abc"},
			want: []string{"SKIFF_HTTPS_LISTEN_PORT"}},
		{name: "unknown command", args: []string{"serve"},
			want: []string{`skiff: unknown command "serve"`}},
		{name: "unexpected argument", args: []string{"server", "extra"},
			want: []string{`unexpected argument "extra"`}},
		{name: "unknown config key", config: "data-dir: /x\nfoo: bar\n",
			want: []string{`unknown key "foo"; keys are the server and agent flag names, e.g. data-dir`}},
		{name: "short flag name as key", config: "d: /x\n",
			want: []string{`unknown key "d"`}},
		{name: "config key in file", config: "config: /other.yaml\n",
			want: []string{`key "config" is not allowed`}},
		{name: "wrong type int", config: "https-listen-port: many\n",
			want: []string{`line 1: key "https-listen-port" must be a whole number`}},
		{name: "wrong type bool", config: "disable-agent: sometimes\n",
			want: []string{`key "disable-agent" must be true or false`}},
		{name: "wrong type string", config: "data-dir: [a, b]\n",
			want: []string{`key "data-dir" must be a single value`}},
		{name: "wrong type list", config: "tls-san: {a: b}\n",
			want: []string{`key "tls-san" must be a string or a list of strings`}},
		{name: "duplicate key", config: "data-dir: /a\ndata-dir: /b\n",
			want: []string{`key "data-dir" already set on line 1`}},
		{name: "malformed yaml", config: "data-dir: [unclosed\n",
			want: []string{"not valid YAML"}},
		{name: "top level list", config: "- data-dir\n",
			want: []string{"top level must be a map"}},
		{name: "explicit missing config flag", args: []string{"server", "--config", "/nonexistent/skiff.yaml"},
			want: []string{"config file /nonexistent/skiff.yaml does not exist"}},
		{name: "explicit missing config env", args: []string{"server"}, env: map[string]string{"SKIFF_CONFIG_FILE": "/nonexistent/skiff.yaml"},
			want: []string{"config file /nonexistent/skiff.yaml does not exist"}},
		{name: "overlapping cidrs", args: []string{"server", "--service-cidr", "10.42.0.0/24", "--cluster-dns", "10.42.0.10"},
			want: []string{"--cluster-cidr 10.42.0.0/16 overlaps --service-cidr 10.42.0.0/24"}},
		{name: "validation error from file", config: "cluster-cidr: 10.42.0.0/33\n",
			want: []string{`skiff server: invalid --cluster-cidr "10.42.0.0/33": not a CIDR; use a form like 10.42.0.0/16`}},
		{name: "bad flannel backend", args: []string{"server", "--flannel-backend", "wireguard"},
			want: []string{`invalid --flannel-backend "wireguard"; use one of vxlan, host-gw, none`}},
		{name: "bad node label", args: []string{"server", "--node-label", "novalue"},
			want: []string{`invalid --node-label "novalue"; use the form key=value`}},
		{name: "bad node taint", args: []string{"server", "--node-taint", "k=v:Sometimes"},
			want: []string{`invalid --node-taint "k=v:Sometimes"`}},
		{name: "token and token file", args: []string{"server", "--token", "x", "--token-file", "/dev/null"},
			want: []string{"--token and --token-file"}},
		{name: "empty token file", args: []string{"server", "--token-file", "/dev/null"},
			want: []string{"is empty"}},
		{name: "missing token file", args: []string{"server", "--token-file", "/nonexistent/token"},
			want: []string{"read --token-file", "/nonexistent/token"}},
		{name: "token command unknown key", args: []string{"token"}, config: "bogus: 1\n",
			want: []string{"skiff token:", `unknown key "bogus"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			t.Setenv("SKIFF_CONFIG_FILE", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := tt.args
			if args == nil {
				args = []string{"server"}
			}
			if tt.config != "" {
				args = append(args, "--config", writeFile(t, "config.yaml", tt.config))
			}
			r := run(t, args...)
			if r.code != 1 {
				t.Fatalf("exit code %d, want 1 (stderr %q)", r.code, r.stderr)
			}
			if r.rec.serverCalls != 0 {
				t.Errorf("server action called despite the error")
			}
			if !strings.HasPrefix(r.stderr, "skiff") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
				t.Errorf("stderr = %q, want exactly one line starting with skiff", r.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr = %q, want it to contain %q", r.stderr, want)
				}
			}
		})
	}
}

func TestServerActionError(t *testing.T) {
	isolate(t)
	var stdout, stderr bytes.Buffer
	a := Actions{Server: func(context.Context, *config.CompletedServer) error { return errors.New("boom") }}
	code := RunWithOutput(context.Background(), []string{"skiff", "server", "--config="}, a, &stdout, &stderr)
	if code != 1 || stderr.String() != "skiff server: boom\n" {
		t.Errorf("code %d, stderr %q; want 1 and \"skiff server: boom\"", code, stderr.String())
	}
}

func TestTokenCommand(t *testing.T) {
	isolate(t)
	dataDir := t.TempDir()
	server := layout.New(dataDir).Server
	if err := os.MkdirAll(server.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(server.TokenFile, []byte("K10abc::server:secret\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := run(t, "token", "--config=", "-d", dataDir)
	if r.code != 0 || r.stdout != "K10abc::server:secret\n" {
		t.Errorf("token -d: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Only data-dir matters to this command; other server keys are accepted.
	cfgPath := writeFile(t, "config.yaml", "data-dir: "+dataDir+"\ncluster-cidr: not-checked-here\n")
	r = run(t, "token", "--config", cfgPath)
	if r.code != 0 || r.stdout != "K10abc::server:secret\n" {
		t.Errorf("token with config file: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	missing := filepath.Join(t.TempDir(), "empty")
	r = run(t, "token", "--config=", "--data-dir", missing)
	want := "skiff token: no token at " + filepath.Join(missing, "server", "token") + ": start \"skiff server\" first (or pass --data-dir)\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("token without token file: code %d, stderr %q, want %q", r.code, r.stderr, want)
	}
}

func TestKubectlPassesArgsUnparsed(t *testing.T) {
	isolate(t)
	r := run(t, "kubectl", "get", "pods", "-A", "--help", "-o=wide")
	if r.code != 0 || !r.rec.kubectlRan {
		t.Fatalf("code %d, kubectl ran %v, stderr %q", r.code, r.rec.kubectlRan, r.stderr)
	}
	if want := []string{"get", "pods", "-A", "--help", "-o=wide"}; !reflect.DeepEqual(r.rec.kubectlArgs, want) {
		t.Errorf("kubectl args = %q, want %q", r.rec.kubectlArgs, want)
	}
}

func TestKubectlFindsTheServersKubeconfig(t *testing.T) {
	isolate(t)
	t.Setenv("SKIFF_CONFIG_FILE", writeFile(t, "config.yaml", "data-dir: /srv/skiff\nwrite-kubeconfig: /srv/admin.yaml\n"))
	r := run(t, "kubectl", "get", "nodes")
	if r.code != 0 || r.rec.local != (Local{DataDir: "/srv/skiff", Kubeconfig: "/srv/admin.yaml"}) {
		t.Fatalf("from the config file: code %d, %+v, stderr %q", r.code, r.rec.local, r.stderr)
	}
	// The environment wins over the file, as for the server.
	t.Setenv("SKIFF_KUBECONFIG_OUTPUT", "/env/admin.yaml")
	t.Setenv("SKIFF_DATA_DIR", "/env/skiff")
	if r := run(t, "kubectl", "get", "nodes"); r.rec.local != (Local{DataDir: "/env/skiff", Kubeconfig: "/env/admin.yaml"}) {
		t.Fatalf("from the environment: %+v", r.rec.local)
	}
	// A broken config file is reported, not ignored.
	t.Setenv("SKIFF_CONFIG_FILE", writeFile(t, "bad.yaml", "no-such-flag: 1\n"))
	if r := run(t, "kubectl", "get", "nodes"); r.code != 1 || r.rec.kubectlRan || !strings.Contains(r.stderr, "no-such-flag") {
		t.Fatalf("bad config file: code %d, ran %v, stderr %q", r.code, r.rec.kubectlRan, r.stderr)
	}
	// Without any, the defaults.
	t.Setenv("SKIFF_CONFIG_FILE", "")
	os.Unsetenv("SKIFF_DATA_DIR")
	os.Unsetenv("SKIFF_KUBECONFIG_OUTPUT")
	if r := run(t, "kubectl", "get", "nodes"); r.rec.local != (Local{DataDir: config.DefaultDataDir, Kubeconfig: config.DefaultKubeconfig}) {
		t.Fatalf("defaults: %+v", r.rec.local)
	}
}

func TestToolExitStatusPassesThrough(t *testing.T) {
	isolate(t)
	t.Setenv("SKIFF_CONFIG_FILE", "")
	var stdout, stderr strings.Builder
	code := RunWithOutput(context.Background(), []string{"skiff", "kubectl", "get", "nope"}, Actions{
		Kubectl: func(Local, []string) error { return ExitStatus(3) },
	}, &stdout, &stderr)
	if code != 3 || stderr.Len() != 0 {
		t.Fatalf("code %d, stderr %q; want kubectl's 3 and nothing more printed", code, stderr.String())
	}
}

func TestVersion(t *testing.T) {
	for _, flag := range []string{"--version", "-v"} {
		r := run(t, flag)
		if r.code != 0 || !strings.Contains(r.stdout, "skiff version ") || !strings.HasSuffix(r.stdout, "kubernetes v1.37.2\n") {
			t.Errorf("%s: code %d, stdout %q", flag, r.code, r.stdout)
		}
	}
}

func TestHelp(t *testing.T) {
	r := run(t, "server", "--help")
	if r.code != 0 {
		t.Fatalf("code %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"--data-dir", "SKIFF_DATA_DIR", "/var/lib/skiff", "SKIFF_KUBECONFIG_OUTPUT", "Networking"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("server --help does not mention %q", want)
		}
	}
	if r := run(t, "--help"); r.code != 0 || !strings.Contains(r.stdout, "server") {
		t.Errorf("--help: code %d, stdout %q", r.code, r.stdout)
	}
}
