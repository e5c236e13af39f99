package server

import (
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/pki"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// ensureToken settles the cluster token: the one the user gave, else the
// stored one, else a new one. It is stored (0600) in its full K10 form so
// agents can pin the CA.
func ensureToken(path, given string, certs *pki.ServerPKI) (pki.Token, error) {
	bundle, err := certs.ServerCABundle()
	if err != nil {
		return pki.Token{}, fmt.Errorf("read server CA: %w", err)
	}
	var tok pki.Token
	switch {
	case given != "":
		tok, err = pki.ParseToken(given)
		if err != nil {
			return pki.Token{}, fmt.Errorf("invalid --token: %w", err)
		}
		if tok.Username == agentTokenUser {
			return pki.Token{}, errors.New("the --token is an agent-only token: it joins agents, not servers; pass the cluster token (skiff token on the server)")
		}
		if !tok.VerifyCA(bundle) {
			return pki.Token{}, fmt.Errorf("the --token was issued for another cluster: its CA hash does not match %s; pass the bare secret or this cluster's token", certs.ServerCACert)
		}
	default:
		stored, rerr := os.ReadFile(path)
		switch {
		case rerr == nil:
			tok, err = pki.ParseToken(string(stored))
			if err != nil {
				return pki.Token{}, fmt.Errorf("stored token %s is damaged (%v); remove it to generate a new one, or pass --token", path, err)
			}
		case errors.Is(rerr, os.ErrNotExist):
			tok, err = pki.NewToken(bundle, "server")
			if err != nil {
				return pki.Token{}, fmt.Errorf("generate token: %w", err)
			}
			logrus.Infof("generated a new cluster token in %s", path)
		default:
			return pki.Token{}, fmt.Errorf("read token %s: %w", path, rerr)
		}
	}
	tok.CAHash = pki.CAHash(bundle)
	if tok.Username == "" {
		tok.Username = "server"
	}
	if err := fileutil.WriteAtomic(path, []byte(tok.String()+"\n"), 0o600); err != nil {
		return pki.Token{}, fmt.Errorf("store token: %w", err)
	}
	return tok, nil
}

type kubeconfigPaths struct {
	controllerManager, scheduler, admin string
}

// writeKubeconfigs writes the components' kubeconfigs (referencing the
// cert files) and the user's admin kubeconfig (self-contained, so it can be
// copied to another machine).
func writeKubeconfigs(cfg *config.Server, l layout.Server, p *pki.ServerPKI, server string) (kubeconfigPaths, error) {
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

	mode, err := cfg.KubeconfigFileMode()
	if err != nil {
		return paths, err
	}
	user := pki.Kubeconfig{Server: server, CACert: p.ServerCACert, CertFile: p.AdminCert, KeyFile: p.AdminKey, Embed: true}
	if err := pki.WriteKubeconfig(cfg.KubeconfigPath, user, mode); err != nil {
		return paths, fmt.Errorf("write kubeconfig %s: %w; pass --write-kubeconfig with a path you can write", cfg.KubeconfigPath, err)
	}
	return paths, nil
}
