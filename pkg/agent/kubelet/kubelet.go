// Package kubelet runs the upstream kubelet and kube-proxy inside the skiff
// process, with configuration generated from the node's settings.
package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/pkg/agent/kubelet/settings"
	"github.com/skiff-io/skiff/pkg/fileutil"
)

// signalStopGrace is how long a kubelet that returned on a signal waits for
// skiff to stop it before its return counts as a failure.
const signalStopGrace = 10 * time.Second

// Kubelet runs the kubelet as a component.
type Kubelet struct {
	settings.Kubelet
}

func (k *Kubelet) Name() string { return "kubelet" }

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
	if err := waitHealthy(ctx, done, fmt.Sprintf("http://127.0.0.1:%d/healthz", settings.HealthzPort), 2*time.Minute); err != nil {
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
