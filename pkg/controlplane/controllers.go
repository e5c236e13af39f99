package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/component-base/configz"

	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// ControllerManager is the kube-controller-manager component. Start returns
// once it has built its controllers.
//
// That wait matters because the components share one process: upstream's
// CSI volume plugin keeps its node-info manager in a package variable that
// every plugin Init replaces. The controller-manager's volume controllers
// init the plugin with no node name when they are built; done after the
// kubelet's own Init, that leaves the kubelet's CSINode set-up with an
// empty node name, and after 140 s of retries it exits the process. Built
// first, the kubelet's Init (which starts later) is the one that counts.
//
// With leader election, a controller-manager that does not lead builds no
// controllers: LeaderElsewhere, when set, tells Start that another server
// holds the lease, so that it need not wait for them.
type ControllerManager struct {
	Args            []string
	LeaderElsewhere func(context.Context) bool
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
	if c.SecureServing == nil || c.SecureServing.Listener == nil {
		return nil, errors.New("kube-controller-manager: no secure port to check its health on")
	}
	healthz := "https://" + c.SecureServing.Listener.Addr().String() + "/healthz?verbose"
	done := make(chan error, 1)
	go func() {
		err := cmapp.Run(ctx, c.Complete())
		if ctx.Err() != nil {
			err = nil
		}
		done <- err
		close(done)
	}()
	if err := waitControllersBuilt(ctx, healthz, done, m.LeaderElsewhere); err != nil {
		return nil, err
	}
	return done, nil
}

// controllersBuiltTimeout bounds the wait for the controllers: past it the
// start goes on (with a warning), as a controller-manager whose controllers
// are all disabled never lists any.
const controllersBuiltTimeout = 2 * time.Minute

// waitControllersBuilt polls the controller-manager's verbose health until
// it lists its controllers' checks, which it registers all at once after
// building every controller.
func waitControllersBuilt(ctx context.Context, url string, exited <-chan error, leaderElsewhere func(context.Context) bool) error {
	client := &http.Client{
		Timeout: 2 * time.Second,
		// Its serving certificate is self-signed, made at start; only the
		// health text is read.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
	}
	deadline := time.Now().Add(controllersBuiltTimeout)
	var askedLeader time.Time
	for {
		if resp, err := client.Get(url); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if strings.Contains(string(body), "-controller ok") {
				return nil
			}
		}
		if leaderElsewhere != nil && time.Since(askedLeader) > time.Second {
			askedLeader = time.Now()
			if leaderElsewhere(ctx) {
				logrus.Info("kube-controller-manager: another server leads; this one waits for the lease")
				return nil
			}
		}
		if time.Now().After(deadline) {
			logrus.Warnf("kube-controller-manager lists no controllers at %s after %s; going on", url, controllersBuiltTimeout)
			return nil
		}
		select {
		case err, ok := <-exited:
			if !ok || err == nil {
				err = errors.New("exited while building its controllers")
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Scheduler is the kube-scheduler component. It may be started again in
// the same process (each time this server wins the scheduler's lease).
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
		// Run registers its configuration in a registry of the process
		// and never takes it out, so a second Run would be refused.
		configz.Delete(schedulerConfigzName)
		if ctx.Err() != nil {
			// The scheduler reports its requested stop as an error.
			err = nil
		}
		done <- err
		close(done)
	}()
	return done, nil
}

// schedulerConfigzName is the name upstream's scheduler registers its
// configuration under in k8s.io/component-base/configz (a literal there).
const schedulerConfigzName = "componentconfig"
