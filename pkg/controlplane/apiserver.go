// Package controlplane runs kube-apiserver, kube-controller-manager and
// kube-scheduler in-process, from their upstream app packages, with flags
// generated from the skiff configuration.
package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	apiapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apioptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// APIServer is the kube-apiserver component. It serves the whole HTTPS
// front of the cluster: Wrap lets the supervisor put its own endpoints in
// front of the apiserver's handler chain, on the same listener.
type APIServer struct {
	// Args is called at start, once the datastore it points at is known.
	Args func() []string
	// Wrap, when set, receives the apiserver's complete handler chain
	// (authentication, authorization, admission...) and returns the handler
	// that actually serves requests.
	Wrap func(apiserver http.Handler) http.Handler

	// Loopback is a privileged client config, available after Start.
	Loopback *rest.Config
}

func (a *APIServer) Name() string { return "kube-apiserver" }

func (a *APIServer) Start(ctx context.Context) (<-chan error, error) {
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	s := apioptions.NewServerRunOptions()
	if err := parseFlags("kube-apiserver", a.Args(), s.Flags().FlagSets); err != nil {
		return nil, err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-apiserver feature gates: %w", err)
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}

	cfg, err := apiapp.NewConfig(completed)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver config: %w", err)
	}
	if a.Wrap != nil {
		// The aggregator is the outermost server of the chain: wrapping its
		// handler puts our endpoints in front of every API request.
		gc := &cfg.Aggregator.GenericConfig.Config
		build := gc.BuildHandlerChainFunc
		gc.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
			return a.Wrap(build(h, c))
		}
	}
	cc, err := cfg.Complete()
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver config: %w", err)
	}
	chain, err := apiapp.CreateServerChain(cc)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	prepared, err := chain.PrepareRun()
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	a.Loopback = rest.CopyConfig(chain.GenericAPIServer.LoopbackClientConfig)

	done := make(chan error, 1)
	go func() {
		done <- prepared.Run(ctx)
		close(done)
	}()

	if err := waitReady(ctx, a.Loopback, done); err != nil {
		return nil, err
	}
	return done, nil
}

// waitReady polls /readyz until the apiserver reports ready, it exits, or
// ctx ends.
func waitReady(ctx context.Context, cfg *rest.Config, done <-chan error) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kube-apiserver client: %w", err)
	}
	var lastErr error
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			if err == nil {
				err = fmt.Errorf("exited during start-up")
			}
			return false, fmt.Errorf("kube-apiserver: %w", err)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		if err != nil {
			lastErr = fmt.Errorf("%w: %s", err, body)
			return false, nil
		}
		return true, nil
	})
	if err != nil && ctx.Err() != nil && lastErr != nil {
		return fmt.Errorf("kube-apiserver not ready (last check: %v): %w", lastErr, err)
	}
	return err
}

// parseFlags parses generated plus user-supplied args into an upstream
// component's named flag sets.
func parseFlags(component string, args []string, sets map[string]*pflag.FlagSet) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	fs.SetOutput(discard{})
	for _, set := range sets {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s arguments: %w (check --%s-arg values)", component, err, component)
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
