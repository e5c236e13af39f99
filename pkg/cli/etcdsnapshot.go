package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/etcd"
	"github.com/skiff-io/skiff/pkg/layout"
)

func etcdSnapshotDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:      flagEtcdSnapshotDir,
		Category:  categoryEtcd,
		Usage:     "directory of the embedded etcd's snapshots (default: server/db/snapshots in the data dir)",
		EnvVars:   envVar(flagEtcdSnapshotDir),
		TakesFile: true,
	}
}

func etcdSnapshotCommand() *cli.Command {
	const name = "etcd-snapshot"
	nameFlag := func(usage string) cli.Flag {
		return &cli.StringFlag{Name: "name", Usage: usage, Value: etcd.OnDemandSnapshotName}
	}
	retentionFlag := &cli.IntFlag{Name: flagEtcdSnapshotRetention, Usage: "how many snapshots of that name to keep (0 keeps them all)",
		Value: config.DefaultEtcdSnapshotRetention, EnvVars: envVar(flagEtcdSnapshotRetention)}
	common := func(flags ...cli.Flag) []cli.Flag {
		return append([]cli.Flag{configFlag(), dataDirFlag(), etcdSnapshotDirFlag()}, flags...)
	}
	return &cli.Command{
		Name:  name,
		Usage: "save, list and delete snapshots of the embedded etcd (restore one with \"skiff server --cluster-reset --cluster-reset-restore-path FILE\")",
		Subcommands: []*cli.Command{
			configurable(&cli.Command{
				Name:      "save",
				Usage:     "save a snapshot of this server's etcd member while the server runs",
				UsageText: "skiff etcd-snapshot save [--name NAME] [--etcd-snapshot-dir DIR] [--data-dir DIR]",
				Flags:     common(nameFlag("start of the snapshot's file name, NAME-NODE-UNIXTIME")),
				Action: func(c *cli.Context) error {
					const cmd = name + " save"
					if c.Args().Present() {
						return inCommand(cmd, fmt.Errorf("unexpected argument %q; name the snapshot with --name", c.Args().First()))
					}
					if err := etcd.ValidateSnapshotName(c.String("name")); err != nil {
						return inCommand(cmd, err)
					}
					client, err := localMember(c)
					if err != nil {
						return inCommand(cmd, err)
					}
					const why = "snapshots are taken from its running etcd member"
					node, err := memberName(c, client, why)
					if err != nil {
						return inCommand(cmd, err)
					}
					s, err := etcd.SaveSnapshot(c.Context, client, snapshotDir(c), c.String("name"), node, time.Now())
					if err != nil {
						return inCommand(cmd, notRunning(c, err, why))
					}
					fmt.Fprintln(c.App.Writer, s.Path)
					return nil
				},
			}),
			configurable(&cli.Command{
				Name:      "ls",
				Aliases:   []string{"list"},
				Usage:     "list the snapshots: name, size in bytes, creation time",
				UsageText: "skiff etcd-snapshot ls [--etcd-snapshot-dir DIR] [-o table|json]",
				Flags:     common(&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "table or json", Value: "table"}),
				Action: func(c *cli.Context) error {
					const cmd = name + " ls"
					if c.Args().Present() {
						return inCommand(cmd, fmt.Errorf("unexpected argument %q; ls takes only flags", c.Args().First()))
					}
					format := c.String("output")
					if format != "table" && format != "json" {
						return inCommand(cmd, fmt.Errorf("unknown --output %q; use table or json", format))
					}
					snapshots, err := etcd.ListSnapshots(snapshotDir(c))
					if err != nil {
						return inCommand(cmd, err)
					}
					if format == "json" {
						if snapshots == nil {
							snapshots = []etcd.Snapshot{}
						}
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						return inCommand(cmd, enc.Encode(snapshots))
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "NAME\tSIZE\tCREATED")
					for _, s := range snapshots {
						fmt.Fprintf(w, "%s\t%d\t%s\n", s.Name, s.Size, s.Created.UTC().Format(time.RFC3339))
					}
					return inCommand(cmd, w.Flush())
				},
			}),
			configurable(&cli.Command{
				Name:      "delete",
				Aliases:   []string{"rm"},
				Usage:     "delete snapshots by the names \"skiff etcd-snapshot ls\" shows",
				UsageText: "skiff etcd-snapshot delete [--etcd-snapshot-dir DIR] NAME...",
				Flags:     common(),
				Action: func(c *cli.Context) error {
					const cmd = name + " delete"
					if !c.Args().Present() {
						return inCommand(cmd, errors.New("name the snapshots to delete, as \"skiff etcd-snapshot ls\" lists them"))
					}
					var errs []error
					for _, n := range c.Args().Slice() {
						if err := etcd.DeleteSnapshots(snapshotDir(c), n); err != nil {
							errs = append(errs, err)
							continue
						}
						fmt.Fprintf(c.App.Writer, "deleted %s\n", n)
					}
					return inCommand(cmd, errors.Join(errs...))
				},
			}),
			configurable(&cli.Command{
				Name:      "prune",
				Usage:     "delete this server's oldest snapshots of a name, keeping the newest --etcd-snapshot-retention",
				UsageText: "skiff etcd-snapshot prune [--name NAME] [--etcd-snapshot-retention N] [--etcd-snapshot-dir DIR]",
				Flags: common(nameFlag("prune the snapshots of this name (the server's scheduled ones are named "+etcd.ScheduledSnapshotName+")"),
					retentionFlag),
				Action: func(c *cli.Context) error {
					const cmd = name + " prune"
					if c.Args().Present() {
						return inCommand(cmd, fmt.Errorf("unexpected argument %q; prune takes only flags", c.Args().First()))
					}
					keep := c.Int(flagEtcdSnapshotRetention)
					if keep < 0 {
						return inCommand(cmd, fmt.Errorf("invalid --etcd-snapshot-retention %d; give how many snapshots to keep", keep))
					}
					if err := etcd.ValidateSnapshotName(c.String("name")); err != nil {
						return inCommand(cmd, err)
					}
					// The node name tells this server's snapshots from others'
					// in a shared dir; the member knows it.
					client, err := localMember(c)
					if err != nil {
						return inCommand(cmd, err)
					}
					node, err := memberName(c, client, "its etcd member tells this server's snapshots from others'")
					if err != nil {
						return inCommand(cmd, err)
					}
					removed, err := etcd.PruneSnapshots(snapshotDir(c), c.String("name"), node, keep)
					for _, s := range removed {
						fmt.Fprintf(c.App.Writer, "deleted %s\n", s.Name)
					}
					return inCommand(cmd, err)
				},
			}),
		},
	}
}

func snapshotDir(c *cli.Context) string {
	if dir := c.String(flagEtcdSnapshotDir); dir != "" {
		return dir
	}
	return layout.New(c.String(flagDataDir)).Server.SnapshotsDir
}

// localMember is how to reach the etcd member of the server on this data
// dir, after checking that the data dir holds one.
func localMember(c *cli.Context) (etcd.Client, error) {
	dataDir := c.String(flagDataDir)
	l := layout.New(dataDir).Server
	if _, err := os.Stat(l.Dir); errors.Is(err, os.ErrPermission) {
		return etcd.Client{}, fmt.Errorf("cannot read %s (permission denied): run as root, or as the user the server runs as", l.Dir)
	}
	if !etcd.HasData(l.EtcdDir) {
		if _, err := os.Stat(l.StateDB); err == nil {
			return etcd.Client{}, errors.New("this server keeps its data in SQLite, not in etcd; use \"skiff datastore snapshot\"")
		}
		return etcd.Client{}, fmt.Errorf("no embedded etcd in %s: pass the --data-dir of a server started with --cluster-init or --server", dataDir)
	}
	client := etcd.LocalClient(l.TLSDir)
	if _, err := os.Stat(client.CertFile); err != nil {
		return etcd.Client{}, fmt.Errorf("no etcd client certificate at %s (%v): start the server once more to have it made", client.CertFile, err)
	}
	return client, nil
}

func memberName(c *cli.Context, client etcd.Client, why string) (string, error) {
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	node, err := etcd.MemberName(ctx, client)
	return node, notRunning(c, err, why)
}

// notRunning words the failure to reach the member, with why the command
// needs it.
func notRunning(c *cli.Context, err error, why string) error {
	if errors.Is(err, etcd.ErrNotRunning) {
		return fmt.Errorf("the skiff server of %s is not running (%v): start it first, %s", c.String(flagDataDir), err, why)
	}
	return err
}
