package server

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
)

// certRenewal re-issues the server's leaf certificates while it runs, so
// a server that is never restarted still renews them RenewBefore their
// expiry: renew is the same step a start takes (pki.EnsureServer, the
// kubeconfigs and the bundled manifests that carry a certificate), which
// leaves current files untouched. The apiserver reloads
// its serving certificate and the components their client certificates
// from the files.
type certRenewal struct {
	every time.Duration
	renew func() error
}

func (c *certRenewal) Name() string { return "certificate renewal" }

func (c *certRenewal) Start(ctx context.Context) (<-chan error, error) {
	done := make(chan error)
	go func() {
		defer close(done)
		ticker := time.NewTicker(c.every)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				// A failure is retried at the next tick: the current
				// certificates stay valid for months.
				if err := c.renew(); err != nil {
					logrus.Warnf("renew certificates: %v", err)
				}
			}
		}
	}()
	return done, nil
}
