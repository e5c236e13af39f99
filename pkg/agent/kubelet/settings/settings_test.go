package settings

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testKubelet() *Kubelet {
	return &Kubelet{
		NodeName:        "node-a",
		NodeIPs:         []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("fd00::10")},
		Labels:          []string{"zone=a", "disk=ssd"},
		Taints:          []string{"dedicated=db:NoSchedule"},
		RootDir:         "/var/lib/kubelet",
		DropInDir:       "/data/agent/etc/kubelet.conf.d",
		Kubeconfig:      "/data/agent/cred/kubelet.kubeconfig",
		ClientCA:        "/data/agent/cred/client-ca.crt",
		ServingCert:     "/data/agent/cred/serving.crt",
		ServingKey:      "/data/agent/cred/serving.key",
		RuntimeEndpoint: "unix:///run/skiff/containerd/containerd.sock",
		ClusterDNS:      []string{"10.43.0.10"},
		ClusterDomain:   "cluster.local",
		ExtraFlags:      []string{"--max-pods=50", "--root-dir=/srv/kubelet"},
	}
}

// The kubelet's API is never open: no anonymous access, no read-only
// port, every request authorized by the apiserver.
func TestKubeletConfigurationIsSecure(t *testing.T) {
	cfg := testKubelet().Configuration()
	auth := cfg["authentication"].(map[string]any)
	if auth["anonymous"].(map[string]any)["enabled"] != false || auth["webhook"].(map[string]any)["enabled"] != true {
		t.Errorf("authentication = %v", auth)
	}
	if auth["x509"].(map[string]any)["clientCAFile"] != "/data/agent/cred/client-ca.crt" {
		t.Errorf("client CA = %v", auth["x509"])
	}
	if cfg["authorization"].(map[string]any)["mode"] != "Webhook" || cfg["readOnlyPort"] != 0 {
		t.Errorf("authorization %v, read-only port %v", cfg["authorization"], cfg["readOnlyPort"])
	}
	if cfg["healthzBindAddress"] != "127.0.0.1" || cfg["healthzPort"] != HealthzPort {
		t.Errorf("health endpoint %v:%v is not on loopback", cfg["healthzBindAddress"], cfg["healthzPort"])
	}
	if cfg["tlsCertFile"] != "/data/agent/cred/serving.crt" || cfg["tlsPrivateKeyFile"] != "/data/agent/cred/serving.key" {
		t.Errorf("serving certificate %v %v", cfg["tlsCertFile"], cfg["tlsPrivateKeyFile"])
	}
}

// The machine facts a node must live with: no CAP_SYS_RESOURCE (OOM score
// 0), cgroup v1 with the cgroupfs driver.
func TestKubeletConfigurationForTheHost(t *testing.T) {
	k := testKubelet()
	cfg := k.Configuration()
	if cfg["oomScoreAdj"] != 0 || cfg["cgroupDriver"] != "cgroupfs" || cfg["failCgroupV1"] != false {
		t.Errorf("cgroup v1 host: oomScoreAdj %v, driver %v, failCgroupV1 %v", cfg["oomScoreAdj"], cfg["cgroupDriver"], cfg["failCgroupV1"])
	}
	if !slices.Equal(cfg["clusterDNS"].([]string), []string{"10.43.0.10"}) || cfg["clusterDomain"] != "cluster.local" {
		t.Errorf("DNS %v %v", cfg["clusterDNS"], cfg["clusterDomain"])
	}
	k.CgroupV2 = true
	if _, set := k.Configuration()["failCgroupV1"]; set {
		t.Error("failCgroupV1 set on a cgroup v2 host")
	}
}

// Imported images run for every pod even when the same image was pulled
// under another name, so the kubelet verifies no pull credentials of
// images already present; a drop-in in the users' directory can still set
// another policy, since the kubelet merges drop-ins over this file.
func TestKubeletConfigurationTrustsImagesOnTheNode(t *testing.T) {
	k := testKubelet()
	if got := k.Configuration()["imagePullCredentialsVerificationPolicy"]; got != "NeverVerify" {
		t.Errorf("imagePullCredentialsVerificationPolicy = %v, want NeverVerify", got)
	}
	if !slices.Contains(k.Args("/c.yaml"), "--config-dir="+k.DropInDir) {
		t.Errorf("the kubelet is not given the drop-in dir %s", k.DropInDir)
	}
	// The kubelet refuses the field when the user turns the check off.
	k.ExtraFlags = append(k.ExtraFlags, "--feature-gates=KubeletEnsureSecretPulledImages=false,Other=true")
	if got, set := k.Configuration()["imagePullCredentialsVerificationPolicy"]; set {
		t.Errorf("imagePullCredentialsVerificationPolicy = %v with the feature gate off", got)
	}
	k.ExtraFlags = append(k.ExtraFlags, "--feature-gates=KubeletEnsureSecretPulledImages=true")
	if got := k.Configuration()["imagePullCredentialsVerificationPolicy"]; got != "NeverVerify" {
		t.Errorf("imagePullCredentialsVerificationPolicy = %v with the feature gate on again, want NeverVerify", got)
	}
}

func TestKubeletArgs(t *testing.T) {
	args := testKubelet().Args("/data/agent/etc/kubelet/kubelet.yaml")
	for _, want := range []string{
		"--config=/data/agent/etc/kubelet/kubelet.yaml",
		"--kubeconfig=/data/agent/cred/kubelet.kubeconfig",
		"--hostname-override=node-a",
		"--cert-dir=/var/lib/kubelet/pki",
		"--config-dir=/data/agent/etc/kubelet.conf.d",
		"--node-ip=192.0.2.10,fd00::10",
		"--node-labels=zone=a,disk=ssd",
		"--register-with-taints=dedicated=db:NoSchedule",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("no %s in %q", want, args)
		}
	}
	// The user's flags come last, so they win over skiff's.
	if got := args[len(args)-2:]; !slices.Equal(got, []string{"--max-pods=50", "--root-dir=/srv/kubelet"}) {
		t.Errorf("the user's flags are not last: %q", args)
	}
	if slices.Contains(args, "--v=2") {
		t.Error("verbose without --debug")
	}
}

func TestProxyArgs(t *testing.T) {
	p := &Proxy{NodeName: "node-a", Kubeconfig: "/k", ClusterCIDR: "10.42.0.0/16", ExtraFlags: []string{"--proxy-mode=nftables"}, Debug: true}
	args := p.Args()
	for _, want := range []string{"--kubeconfig=/k", "--hostname-override=node-a", "--cluster-cidr=10.42.0.0/16", "--healthz-bind-address=127.0.0.1:10256", "--v=2"} {
		if !slices.Contains(args, want) {
			t.Errorf("no %s in %q", want, args)
		}
	}
	// --kube-proxy-arg proxy-mode=nftables must win over the default.
	if args[len(args)-1] != "--proxy-mode=nftables" {
		t.Errorf("the user's flags are not last: %q", args)
	}
}

// A host whose resolv.conf names only a loopback resolver (as
// systemd-resolved's does) gets a fallback a pod can reach; one with a
// reachable resolver keeps its own.
func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	loopback := write("stub.conf", "# systemd-resolved\nnameserver 127.0.0.53\n")
	usable := write("uplink.conf", "search lan\nnameserver 192.0.2.53\n")

	if got := resolvConf([]string{loopback, usable}, dir); got != usable {
		t.Errorf("ResolvConf = %q, want the file with a reachable resolver", got)
	}
	fallbackDir := filepath.Join(dir, "etc")
	got := resolvConf([]string{loopback, filepath.Join(dir, "missing")}, fallbackDir)
	if got != filepath.Join(fallbackDir, "resolv.conf") {
		t.Fatalf("ResolvConf = %q, want the fallback", got)
	}
	data, err := os.ReadFile(got)
	if err != nil || !strings.HasPrefix(string(data), "nameserver ") || strings.Contains(string(data), "127.") {
		t.Fatalf("fallback %q %v", data, err)
	}
}
