package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/datastore/snapshot"
	"github.com/skiff-io/skiff/pkg/layout"
)

func datastoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "datastore",
		Usage: "back up and restore the embedded SQLite datastore",
		Subcommands: []*cli.Command{
			configurable(&cli.Command{
				Name:      "snapshot",
				Usage:     "write a consistent copy of the datastore, also while the server runs",
				UsageText: "skiff datastore snapshot [--data-dir DIR] [--output FILE]",
				Flags: []cli.Flag{configFlag(), dataDirFlag(), &cli.StringFlag{
					Name:      "output",
					Aliases:   []string{"o"},
					Usage:     "snapshot file to create (default: <data-dir>/server/db/snapshots/snapshot-<UTC time>.db)",
					TakesFile: true,
				}},
				Action: func(c *cli.Context) error {
					out := c.String("output")
					if out == "" {
						dir := layout.New(c.String(flagDataDir)).Server.SnapshotsDir
						if err := os.MkdirAll(dir, 0o700); err != nil {
							return inCommand("datastore snapshot", fmt.Errorf("create %s: %w", dir, err))
						}
						out = filepath.Join(dir, "snapshot-"+time.Now().UTC().Format("20060102T150405Z")+".db")
					}
					if err := snapshot.Save(c.Context, c.String(flagDataDir), out); err != nil {
						return inCommand("datastore snapshot", err)
					}
					fmt.Fprintln(c.App.Writer, out)
					return nil
				},
			}),
			configurable(&cli.Command{
				Name:      "restore",
				Usage:     "replace the datastore of a stopped server with a snapshot",
				UsageText: "skiff datastore restore [--data-dir DIR] SNAPSHOT",
				Flags:     []cli.Flag{configFlag(), dataDirFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return inCommand("datastore restore", fmt.Errorf("give exactly one snapshot file; see \"skiff datastore restore --help\""))
					}
					if err := snapshot.Restore(c.Context, c.String(flagDataDir), c.Args().First()); err != nil {
						return inCommand("datastore restore", err)
					}
					fmt.Fprintf(c.App.Writer, "restored %s into %s\n", c.Args().First(), c.String(flagDataDir))
					return nil
				},
			}),
		},
	}
}
