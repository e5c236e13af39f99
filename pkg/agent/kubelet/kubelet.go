// Package kubelet runs the upstream kubelet and kube-proxy inside the skiff
// process, with configuration generated from the node's settings.
package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// healthzPort is the kubelet's local health endpoint; it only listens on
// loopback.
const healthzPort = 10248

// signalStopGrace is how long a kubelet that returned on a signal waits for
// skiff to stop it before its return counts as a failure.
const signalStopGrace = 10 * time.Second

// Kubelet runs the kubelet as a component.
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

func (k *Kubelet) Name() string { return "kubelet" }

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
		"healthzPort":              healthzPort,
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

// Start writes the configuration and runs the kubelet until its health
// endpoint answers.
func (k *Kubelet) Start(ctx context.Context) (<-chan error, error) {
	for _, dir := range []string{k.ConfigDir, k.StaticPodDir, k.RootDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	data, err := yaml.Marshal(k.Configuration())
	if err != nil {
		return nil, fmt.Errorf("encode kubelet configuration: %w", err)
	}
	configFile := filepath.Join(k.ConfigDir, "kubelet.yaml")
	if err := fileutil.WriteAtomic(configFile, data, 0o600); err != nil {
		return nil, err
	}

	cmd := kubeletapp.NewKubeletCommand(ctx)
	cmd.SetArgs(k.Args(configFile))
	done := make(chan error, 1)
	healthy := make(chan struct{})
	go func() {
		err := cmd.ExecuteContext(ctx)
		if ctx.Err() == nil {
			select {
			case <-healthy:
				// Upstream runs the kubelet on a context of its own that only
				// SIGTERM or SIGINT ends. So when a running kubelet returns,
				// the process has most likely got that signal, and skiff's
				// own handling of it stops this component a moment later;
				// reporting the return at once would race that orderly stop.
				select {
				case <-ctx.Done():
				case <-time.After(signalStopGrace):
				}
			default:
			}
		}
		switch {
		case ctx.Err() != nil:
		case err != nil:
			done <- fmt.Errorf("kubelet exited: %w", err)
		default:
			done <- errors.New("kubelet exited")
		}
		close(done)
	}()
	if err := waitHealthy(ctx, done, fmt.Sprintf("http://127.0.0.1:%d/healthz", healthzPort), 2*time.Minute); err != nil {
		return nil, err // the runner prefixes "start kubelet"
	}
	close(healthy)
	stopped := make(chan error, 1)
	go func() {
		select {
		case err, ok := <-done:
			if ok {
				stopped <- err
			}
		case <-ctx.Done():
		}
		close(stopped)
	}()
	return stopped, nil
}

// waitHealthy polls a health URL until it answers 200, the component
// exits, or the timeout passes.
func waitHealthy(ctx context.Context, exited <-chan error, url string, timeout time.Duration) error {
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback health check
	}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			if err == nil {
				err = fmt.Errorf("exited before it was healthy")
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy at %s within %s", url, timeout)
		}
	}
}

// ResolvConf returns a resolv.conf whose nameservers pods can reach: a
// loopback resolver (systemd-resolved's 127.0.0.53) is useless inside a pod.
// Without one, a fallback naming a public resolver is written into dir, so
// that cluster DNS (which forwards to it) still starts and serves cluster
// names on a host that is offline.
func ResolvConf(dir string) string {
	for _, candidate := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
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
