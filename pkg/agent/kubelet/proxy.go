package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
	"sigs.k8s.io/yaml"
)

// proxyHealthzPort is kube-proxy's health endpoint, on loopback.
const proxyHealthzPort = 10256

// Proxy runs kube-proxy as a component.
type Proxy struct {
	NodeName    string
	Kubeconfig  string
	ClusterCIDR string
	ConfigDir   string
	ExtraArgs   []string // key=value, appended last so they win
	Debug       bool
}

func (p *Proxy) Name() string { return "kube-proxy" }

// Configuration is the KubeProxyConfiguration skiff generates.
func (p *Proxy) Configuration() map[string]any {
	return map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"mode":               "iptables",
		"hostnameOverride":   p.NodeName,
		"clusterCIDR":        p.ClusterCIDR,
		"clientConnection":   map[string]any{"kubeconfig": p.Kubeconfig},
		"healthzBindAddress": fmt.Sprintf("127.0.0.1:%d", proxyHealthzPort),
		"metricsBindAddress": "127.0.0.1:10249",
		// The conntrack table size is a host-wide setting; leave it alone
		// rather than fail where it cannot be changed.
		"conntrack": map[string]any{"maxPerCore": 0},
	}
}

// Args are kube-proxy's flags; ExtraArgs come last and win.
func (p *Proxy) Args(configFile string) []string {
	args := []string{"--config=" + configFile}
	if p.Debug {
		args = append(args, "--v=2")
	}
	for _, a := range p.ExtraArgs {
		args = append(args, "--"+strings.TrimPrefix(a, "--"))
	}
	return args
}

// Start runs kube-proxy until its health endpoint answers. It runs on the
// component's context, so it stops with it.
func (p *Proxy) Start(ctx context.Context) (<-chan error, error) {
	if err := os.MkdirAll(p.ConfigDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", p.ConfigDir, err)
	}
	data, err := yaml.Marshal(p.Configuration())
	if err != nil {
		return nil, fmt.Errorf("encode kube-proxy configuration: %w", err)
	}
	configFile := filepath.Join(p.ConfigDir, "kube-proxy.yaml")
	if err := writeFile(configFile, data); err != nil {
		return nil, err
	}

	opts := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	opts.AddFlags(fs)
	if err := fs.Parse(p.Args(configFile)); err != nil {
		return nil, fmt.Errorf("kube-proxy flags: %w", err)
	}
	if err := opts.Complete(fs); err != nil {
		return nil, fmt.Errorf("kube-proxy configuration: %w", err)
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("kube-proxy configuration: %w", err)
	}

	exited := make(chan error, 1)
	go func() {
		// Upstream's run loop only returns on an error; a cancelled ctx
		// stops the proxier's work but not the loop.
		exited <- opts.Run(ctx)
	}()
	if err := waitHealthy(ctx, exited, fmt.Sprintf("http://127.0.0.1:%d/healthz", proxyHealthzPort), 2*time.Minute); err != nil {
		return nil, fmt.Errorf("kube-proxy: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		select {
		case err := <-exited:
			if ctx.Err() == nil {
				done <- fmt.Errorf("kube-proxy exited: %v", err)
			}
		case <-ctx.Done():
		}
		close(done)
	}()
	return done, nil
}
