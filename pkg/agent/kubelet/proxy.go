package kubelet

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
)

// proxyHealthzPort is kube-proxy's health endpoint, on loopback.
const proxyHealthzPort = 10256

// Proxy runs kube-proxy as a component.
type Proxy struct {
	NodeName    string
	Kubeconfig  string
	ClusterCIDR string
	ExtraFlags  []string // the user's, appended last so they win
	Debug       bool
}

func (p *Proxy) Name() string { return "kube-proxy" }

// Args are kube-proxy's flags; ExtraFlags come last and win. Flags rather
// than a configuration file: upstream ignores every flag but logging once a
// file is given, which would silently drop the user's --kube-proxy-arg.
func (p *Proxy) Args() []string {
	args := []string{
		"--kubeconfig=" + p.Kubeconfig,
		"--proxy-mode=iptables",
		"--hostname-override=" + p.NodeName,
		"--cluster-cidr=" + p.ClusterCIDR,
		fmt.Sprintf("--healthz-bind-address=127.0.0.1:%d", proxyHealthzPort),
		"--metrics-bind-address=127.0.0.1:10249",
		// The conntrack table size is a host-wide setting; leave it alone
		// rather than fail where it cannot be changed.
		"--conntrack-max-per-core=0",
	}
	if p.Debug {
		args = append(args, "--v=2")
	}
	return append(args, p.ExtraFlags...)
}

// Start runs kube-proxy until its health endpoint answers. It runs on the
// component's context, so it stops with it.
func (p *Proxy) Start(ctx context.Context) (<-chan error, error) {
	opts := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	opts.AddFlags(fs)
	if err := fs.Parse(p.Args()); err != nil {
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
		return nil, err // the runner prefixes "start kube-proxy"
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
