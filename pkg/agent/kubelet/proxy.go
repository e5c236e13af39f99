package kubelet

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/skiff-io/skiff/pkg/agent/kubelet/settings"
)

// Proxy runs kube-proxy as a component.
type Proxy struct {
	settings.Proxy
}

func (p *Proxy) Name() string { return "kube-proxy" }

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
	if err := waitHealthy(ctx, exited, fmt.Sprintf("http://127.0.0.1:%d/healthz", settings.ProxyHealthzPort), 2*time.Minute); err != nil {
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
