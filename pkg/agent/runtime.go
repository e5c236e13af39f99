package agent

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/agent/flannel"
	"github.com/skiff-io/skiff/pkg/bundle"
	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

// Runtime is a node's container runtime: the helper executables unpacked,
// containerd running and the system images imported into it. None of that
// needs the server, and on a first start it takes seconds, so Start returns
// at once and the work goes on in the background: a server starts its node's
// runtime beside its control plane. The kubelet starts after Wait.
type Runtime struct {
	cfg *config.Agent
	// flannelBackend is the cluster's pod network backend; with none, the
	// user's CNI lives in the host's standard dirs.
	flannelBackend string
	ready          chan struct{} // closed once containerd serves with the sandbox image in it
	exited         chan struct{} // closed once the runtime has stopped; err says why
	err            error
}

// NewRuntime returns the runtime of the node cfg describes, on a cluster
// whose pod network is flannelBackend; Start starts it.
func NewRuntime(cfg *config.Agent, flannelBackend string) *Runtime {
	return &Runtime{cfg: cfg, flannelBackend: flannelBackend, ready: make(chan struct{}), exited: make(chan struct{})}
}

func (r *Runtime) Name() string { return "container-runtime" }

// Start returns at once; a failure to unpack, to start containerd or to
// import an image is reported by Wait, and ends the runtime.
func (r *Runtime) Start(ctx context.Context) (<-chan error, error) {
	done := make(chan error, 1)
	go func() {
		err := r.run(ctx)
		if ctx.Err() != nil {
			err = nil // stopped as asked
		}
		r.err = err
		close(r.exited)
		done <- err
		close(done)
	}()
	return done, nil
}

func (r *Runtime) run(ctx context.Context) error {
	comps, err := r.components()
	if err != nil {
		return err
	}
	return component.Run(ctx, func() {
		logrus.Info("container runtime ready: containerd serves and has the pod sandbox image")
		close(r.ready)
	}, comps...)
}

// Wait returns once the runtime is ready, or why it stopped before that.
func (r *Runtime) Wait(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	case <-r.exited:
		if r.err == nil {
			return errors.New("container runtime: stopped before it was ready")
		}
		return fmt.Errorf("container runtime: %w", r.err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Runtime) components() ([]component.Component, error) {
	cfg := r.cfg
	paths := layout.New(cfg.DataDir)
	l := paths.Agent
	for _, dir := range []string{l.Dir, l.EtcDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(l.ImagesDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", l.ImagesDir, err)
	}
	// Before containerd mounts anything: volumes with Bidirectional
	// propagation need a shared root mount, and many container images and
	// minimal systems leave / private.
	if err := unix.Mount("", "/", "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("make / a shared mount (mount --make-rshared /): %w; skiff needs to run as root", err)
	}
	binDir, err := bundle.Extract(paths.HelpersDir)
	if err != nil {
		return nil, fmt.Errorf("extract helper executables: %w", err)
	}
	logrus.Infof("helper executables in %s", binDir)

	cniBinDirs, cniConfDir := []string{binDir}, l.CNIConfDir
	if r.flannelBackend == flannel.BackendNone {
		// Stock CNIs install their plugins and config in the host's
		// standard dirs, their own versions of the common plugins first;
		// the bundled ones (loopback, portmap, bandwidth...) stay behind
		// them for configs that name them.
		cniBinDirs, cniConfDir = []string{layout.HostCNIBinDir, binDir}, layout.HostCNIConfDir
		if err := os.MkdirAll(cniConfDir, 0o755); err != nil {
			return nil, fmt.Errorf("create %s for the CNI you bring (--flannel-backend none): %w", cniConfDir, err)
		}
	}

	ctrd := &containerd.Process{Config: containerd.Config{
		RootDir:        l.ContainerdDir,
		StateDir:       paths.Run.ContainerdDir,
		ConfigDir:      l.ContainerdConfigDir,
		Address:        containerd.DefaultAddress,
		BinDir:         binDir,
		CNIBinDirs:     cniBinDirs,
		CNIConfDir:     cniConfDir,
		SandboxImage:   PauseImage,
		Snapshotter:    cfg.Snapshotter,
		RegistriesFile: cfg.RegistriesFile,
		LogFile:        l.ContainerdLog,
		Debug:          cfg.Debug,
	}}
	images := &systemImages{
		address: containerd.DefaultAddress,
		binDir:  binDir,
		dir:     &containerd.ImageDir{Dir: l.ImagesDir, Address: containerd.DefaultAddress},
	}
	return []component.Component{ctrd, images}, nil
}

// afterRuntime starts a component once the runtime is ready.
type afterRuntime struct {
	runtime *Runtime
	component.Component
}

func (a afterRuntime) Start(ctx context.Context) (<-chan error, error) {
	if err := a.runtime.Wait(ctx); err != nil {
		return nil, err
	}
	return a.Component.Start(ctx)
}
