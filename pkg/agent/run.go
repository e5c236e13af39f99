package agent

import (
	"context"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

// Run runs `skiff agent`: a node joined to a remote server, until ctx is
// cancelled.
func Run(ctx context.Context, cfg *config.Agent) error {
	SetupLogging(cfg.Debug)
	root := layout.New(cfg.DataDir).Agent.Dir
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("data dir %s is not writable (%v); run as root or pass a --data-dir you own", cfg.DataDir, err)
	}
	name, err := NodeName(cfg.NodeName)
	if err != nil {
		return err
	}
	cfg.NodeName = name
	cfg.NodeIPs = NodeIPs(cfg.NodeIPs)
	if cfg.LoadBalancerAddress == "" {
		cfg.LoadBalancerAddress = config.DefaultLoadBalancerAddress
	}
	ready := func() { logrus.Infof("node %s joined %s and is running", cfg.NodeName, cfg.ServerURL) }
	if err := component.Run(ctx, ready, &Agent{Config: cfg}); err != nil {
		return err
	}
	logrus.Info("skiff agent stopped")
	return nil
}
