package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/secretsencrypt"
)

// secretsEncryptCommand is `skiff secrets-encrypt`: the key stages of a
// server started with --secrets-encryption, on that server, while it runs.
func secretsEncryptCommand() *cli.Command {
	const name = "secrets-encrypt"
	sub := func(op, usage, usageText string, extra []cli.Flag, run func(*cli.Context, secretsencrypt.Files) error) *cli.Command {
		full := name + " " + op
		cmd := configurable(&cli.Command{
			Name:      op,
			Usage:     usage,
			UsageText: usageText,
			Flags:     append([]cli.Flag{configFlag(), dataDirFlag()}, extra...),
			Action: func(c *cli.Context) error {
				if c.Args().Present() {
					return inCommand(full, fmt.Errorf("unexpected argument %q; %s takes only flags", c.Args().First(), full))
				}
				return inCommand(full, run(c, secretsencrypt.Files{Dir: layout.New(c.String(flagDataDir)).Server.CredDir}))
			},
		})
		// Errors name the whole command, "skiff secrets-encrypt status: ...".
		cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return inCommand(full, usageError(appName+" "+full, err))
		}
		cmd.Before = func(c *cli.Context) error { return inCommand(full, applyConfigFile(c)) }
		return cmd
	}
	return &cli.Command{
		Name:  name,
		Usage: "show and rotate the key that encrypts Secrets at rest (servers with --secrets-encryption)",
		Description: "Rotating the key without downtime, on the server, while it runs:\n" +
			"prepare (add a new key), rotate (make it the write key), reencrypt (rewrite every Secret\n" +
			"under it, then drop the old key). The apiserver reloads the config by itself within a minute.",
		Subcommands: []*cli.Command{
			sub("status", "show whether encryption is on, the stage, the keys and whether the apiserver loaded them",
				"skiff secrets-encrypt status [--data-dir DIR]", nil, secretsEncryptStatus),
			sub("prepare", "add a new key that decrypts but does not encrypt yet",
				"skiff secrets-encrypt prepare [--data-dir DIR]", nil,
				func(c *cli.Context, f secretsencrypt.Files) error {
					st, err := f.Prepare()
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "stage %s: added key %s after the write key %s; run %q next\n",
						st.Stage, st.Keys[1].Name, st.WriteKey(), secretsencrypt.Command+" rotate")
					return nil
				}),
			sub("rotate", "make the prepared key the one new Secrets are encrypted with",
				"skiff secrets-encrypt rotate [--data-dir DIR]", nil,
				func(c *cli.Context, f secretsencrypt.Files) error {
					st, err := f.Rotate()
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "stage %s: %s is the write key, %s still decrypts; run %q next\n",
						st.Stage, st.WriteKey(), st.Keys[1].Name, secretsencrypt.Command+" reencrypt")
					return nil
				}),
			sub("reencrypt", "rewrite every Secret under the write key, then remove the other keys",
				"skiff secrets-encrypt reencrypt [--data-dir DIR] [--timeout 3m]",
				[]cli.Flag{&cli.DurationFlag{Name: "timeout", Usage: "how long to wait for the apiserver to load the current config (it checks once a minute)", Value: 3 * time.Minute}},
				func(c *cli.Context, f secretsencrypt.Files) error {
					if c.Duration("timeout") <= 0 {
						return fmt.Errorf("invalid --timeout %s; use a positive duration such as 3m", c.Duration("timeout"))
					}
					cluster := &secretsencrypt.Cluster{Kubeconfig: layout.New(c.String(flagDataDir)).Server.AdminKubeconfig}
					return secretsencrypt.Reencrypt(c.Context, f, cluster, c.Duration("timeout"), c.App.Writer)
				}),
		},
	}
}

func secretsEncryptStatus(c *cli.Context, f secretsencrypt.Files) error {
	st, err := f.Status()
	if err != nil {
		return err
	}
	w := c.App.Writer
	if !st.Enabled {
		fmt.Fprintf(w, "encryption: disabled (no %s; start the server with --secrets-encryption)\n", st.Path)
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	cluster := &secretsencrypt.Cluster{Kubeconfig: layout.New(c.String(flagDataDir)).Server.AdminKubeconfig}
	fmt.Fprintf(w, "encryption: enabled\n")
	fmt.Fprintf(w, "config: %s\n", st.Path)
	fmt.Fprintf(w, "stage: %s\n", st.Stage)
	fmt.Fprintf(w, "provider: %s\n", st.Provider)
	fmt.Fprintf(w, "write key: %s\n", st.WriteKey())
	fmt.Fprintf(w, "keys: %s, identity\n", strings.Join(st.KeyNames(), ", "))
	fmt.Fprintf(w, "apiserver loaded this config: %s\n", cluster.Loaded(ctx, st.Hash))
	return nil
}
