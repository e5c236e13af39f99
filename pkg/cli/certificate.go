package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/pki"
)

// expiryWarning is how close to expiry `skiff certificate check` fails.
const expiryWarning = 30 * 24 * time.Hour

func certificateCommand() *cli.Command {
	dirs := func(c *cli.Context) (string, string) {
		l := layout.New(c.String(flagDataDir))
		return l.Server.TLSDir, l.Agent.CredDir
	}
	return &cli.Command{
		Name:  "certificate",
		Usage: "check and rotate the certificates skiff manages on this host",
		Subcommands: []*cli.Command{
			configurable(&cli.Command{
				Name:      "check",
				Usage:     "list every certificate with its expiry; fails when one expires within 30 days",
				UsageText: "skiff certificate check [--data-dir DIR]",
				Flags:     []cli.Flag{configFlag(), dataDirFlag()},
				Action: func(c *cli.Context) error {
					tlsDir, credDir := dirs(c)
					return inCommand("certificate check", checkCertificates(c, tlsDir, credDir))
				},
			}),
			configurable(&cli.Command{
				Name:  "rotate",
				Usage: "re-issue leaf certificates (all, or one service's); restart skiff to use them",
				UsageText: "skiff certificate rotate [--data-dir DIR] [--service NAME]...\n\n" +
					"Server certificates are re-issued now, for their keys and names; the server\n" +
					"uses them after its next restart. Node certificates (kubelet, kube-proxy)\n" +
					"are removed with their keys: the agent's next start gets new ones.",
				Flags: []cli.Flag{configFlag(), dataDirFlag(), &cli.StringSliceFlag{
					Name:  "service",
					Usage: "only this service's certificates (see \"skiff certificate check\"); repeatable",
				}},
				Action: func(c *cli.Context) error {
					tlsDir, credDir := dirs(c)
					return inCommand("certificate rotate", rotateCertificates(c, tlsDir, credDir))
				},
			}),
		},
	}
}

func checkCertificates(c *cli.Context, tlsDir, credDir string) error {
	certs, err := pki.ManagedCerts(tlsDir, credDir)
	if err != nil {
		return err
	}
	if len(certs) == 0 {
		return fmt.Errorf("no certificates under %s or %s: start skiff first, or pass its --data-dir", tlsDir, credDir)
	}
	now := time.Now()
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	var expiring []string
	for _, cert := range certs {
		notAfter, err := pki.Expiry(cert.Cert)
		if err != nil {
			return err
		}
		left := notAfter.Sub(now)
		status := fmt.Sprintf("ok, %d days left", int(left.Hours()/24))
		switch {
		case left <= 0:
			status = "EXPIRED"
		case left < expiryWarning:
			status = fmt.Sprintf("EXPIRES in %d days", int(left.Hours()/24))
		}
		if left < expiryWarning {
			expiring = append(expiring, cert.Cert)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", cert.Service, cert.Cert, notAfter.UTC().Format(time.RFC3339), status)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(expiring) > 0 {
		return fmt.Errorf("%d certificates expire within 30 days (%s): run \"skiff certificate rotate\" and restart skiff", len(expiring), strings.Join(expiring, ", "))
	}
	return nil
}

func rotateCertificates(c *cli.Context, tlsDir, credDir string) error {
	certs, err := pki.ManagedCerts(tlsDir, credDir)
	if err != nil {
		return err
	}
	services := pki.Services(certs)
	if len(services) == 0 {
		return fmt.Errorf("no certificates under %s or %s: start skiff first, or pass its --data-dir", tlsDir, credDir)
	}
	wanted := c.StringSlice("service")
	for _, s := range wanted {
		if !slices.Contains(services, s) {
			return fmt.Errorf("unknown service %q; this host has certificates for %s", s, strings.Join(services, ", "))
		}
	}
	var errs []error
	for _, cert := range certs {
		if cert.CA || (len(wanted) > 0 && !slices.Contains(wanted, cert.Service)) {
			continue
		}
		if err := pki.Rotate(cert, tlsDir); err != nil {
			errs = append(errs, err)
			continue
		}
		how := "re-issued; used after skiff's next restart"
		if cert.Node {
			how = "removed with its key; the agent's next start gets a new one"
		}
		fmt.Fprintf(c.App.Writer, "%s: %s %s\n", cert.Service, cert.Cert, how)
	}
	return errors.Join(errs...)
}
