package server

import (
	"fmt"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/pki"
)

type kubeconfigPaths struct {
	controllerManager, scheduler, admin string
}

// writeKubeconfigs writes the components' kubeconfigs (referencing the
// cert files) and the user's admin kubeconfig (self-contained, so it can be
// copied to another machine).
func writeKubeconfigs(cfg *config.CompletedServer, l layout.Server, p *pki.ServerPKI, server string) (kubeconfigPaths, error) {
	paths := kubeconfigPaths{
		controllerManager: l.ControllerManagerKubeconfig,
		scheduler:         l.SchedulerKubeconfig,
		admin:             l.AdminKubeconfig,
	}
	files := []struct {
		path      string
		cert, key string
	}{
		{paths.controllerManager, p.ControllerManagerCert, p.ControllerManagerKey},
		{paths.scheduler, p.SchedulerCert, p.SchedulerKey},
		{paths.admin, p.AdminCert, p.AdminKey},
	}
	for _, f := range files {
		kc := pki.Kubeconfig{Server: server, CACert: p.ServerCACert, CertFile: f.cert, KeyFile: f.key}
		if err := pki.WriteKubeconfig(f.path, kc, 0o600); err != nil {
			return paths, fmt.Errorf("write %s: %w", f.path, err)
		}
	}

	user := pki.Kubeconfig{Server: server, CACert: p.ServerCACert, CertFile: p.AdminCert, KeyFile: p.AdminKey, Embed: true}
	if err := pki.WriteKubeconfig(cfg.KubeconfigPath, user, cfg.KubeconfigMode); err != nil {
		return paths, fmt.Errorf("write kubeconfig %s: %w; pass --write-kubeconfig with a path you can write", cfg.KubeconfigPath, err)
	}
	return paths, nil
}
