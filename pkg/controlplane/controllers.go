package controlplane

import (
	"context"
	"fmt"

	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// ControllerManager is the kube-controller-manager component. It waits for
// the apiserver on its own, so Start returns as soon as it is configured.
type ControllerManager struct {
	Args []string
}

func (m *ControllerManager) Name() string { return "kube-controller-manager" }

func (m *ControllerManager) Start(ctx context.Context) (<-chan error, error) {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager options: %w", err)
	}
	known, disabled, aliases := cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases()
	nfs := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &nfs
	if err := parseFlags("kube-controller-manager", m.Args, nfs.FlagSets); err != nil {
		return nil, err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-controller-manager feature gates: %w", err)
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager config: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		err := cmapp.Run(ctx, c.Complete())
		if ctx.Err() != nil {
			err = nil
		}
		done <- err
		close(done)
	}()
	return done, nil
}

// Scheduler is the kube-scheduler component.
type Scheduler struct {
	Args []string
}

func (s *Scheduler) Name() string { return "kube-scheduler" }

func (s *Scheduler) Start(ctx context.Context) (<-chan error, error) {
	opts := schedoptions.NewOptions()
	if err := parseFlags("kube-scheduler", s.Args, opts.Flags.FlagSets); err != nil {
		return nil, err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-scheduler feature gates: %w", err)
	}
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("kube-scheduler setup: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		err := schedapp.Run(ctx, cc, sched)
		if ctx.Err() != nil {
			// The scheduler reports its requested stop as an error.
			err = nil
		}
		done <- err
		close(done)
	}()
	return done, nil
}
