package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/config"
)

// clusterCommand is `skiff cluster`: test clusters of several nodes on
// this machine, each node in namespaces of its own.
func clusterCommand(a Actions) *cli.Command {
	const name = "cluster"
	run := func(c *cli.Context, req *config.ClusterRequest) error {
		if a.Cluster == nil {
			return inCommand(name, errors.New("cluster is not available in this build"))
		}
		req.Out = c.App.Writer
		return inCommand(name+" "+req.Op, a.Cluster(c.Context, req))
	}
	// named is a sub-command that takes exactly one cluster name.
	named := func(op, usage string) *cli.Command {
		return &cli.Command{
			Name:      op,
			Usage:     usage,
			UsageText: "skiff cluster " + op + " NAME",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return inCommand(name+" "+op, errors.New("name one cluster (skiff cluster list shows them)"))
				}
				return run(c, &config.ClusterRequest{Op: op, Name: c.Args().First()})
			},
		}
	}
	return &cli.Command{
		Name:  name,
		Usage: "run a test cluster of several nodes on this machine, each in its own namespaces (no Docker needed)",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "create and start a cluster; returns when its nodes are Ready and its addons available",
				UsageText: "skiff cluster create [--servers N] [--agents M] [--image-dir DIR] [--config FILE] [--kubeconfig PATH] NAME [-- server flags]\n" +
					"   e.g. skiff cluster create --agents 2 ci -- --disable metrics-server",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "servers", Value: 1, Usage: "number of servers; more than one run embedded etcd (or share --datastore-endpoint given as a server flag)"},
					&cli.IntFlag{Name: "agents", Usage: "number of agents"},
					&cli.StringFlag{Name: "image-dir", Usage: "directory of image archives (*.tar, *.tar.gz, *.tar.zst) imported on every node", TakesFile: true},
					&cli.StringFlag{Name: "config", Usage: "cluster file naming the nodes, their roles, labels, taints and flags (instead of --servers and --agents)", TakesFile: true},
					&cli.StringFlag{Name: "kubeconfig", Usage: "where to write the cluster's kubeconfig (default: ~/.kube/skiff-NAME.yaml)", TakesFile: true},
				},
				Action: func(c *cli.Context) error {
					args := c.Args().Slice()
					if len(args) == 0 || strings.HasPrefix(args[0], "-") {
						return inCommand(name+" create", errors.New("name the cluster: skiff cluster create [flags] NAME [-- server flags]"))
					}
					clusterName, serverArgs := args[0], args[1:]
					if len(serverArgs) > 0 {
						if serverArgs[0] != "--" {
							return inCommand(name+" create", fmt.Errorf("unexpected %q after the cluster name: put create's flags before the name and server flags after \"--\"", serverArgs[0]))
						}
						serverArgs = serverArgs[1:]
					}
					if c.IsSet("config") && (c.IsSet("servers") || c.IsSet("agents")) {
						return inCommand(name+" create", errors.New("--config names the nodes itself; leave out --servers and --agents"))
					}
					if c.Int("servers") < 1 || c.Int("agents") < 0 {
						return inCommand(name+" create", errors.New("a cluster needs at least one server and no negative number of agents"))
					}
					return run(c, &config.ClusterRequest{
						Op: "create", Name: clusterName,
						Servers: c.Int("servers"), Agents: c.Int("agents"),
						ImageDir: c.String("image-dir"), ConfigFile: c.String("config"),
						Kubeconfig: c.String("kubeconfig"), ServerArgs: serverArgs,
					})
				},
			},
			{
				Name:  "list",
				Usage: "list the clusters on this machine",
				Action: func(c *cli.Context) error {
					return run(c, &config.ClusterRequest{Op: "list"})
				},
			},
			named("kubeconfig", "print the cluster's kubeconfig"),
			named("stop", "stop every node of the cluster; they keep their data"),
			named("start", "start the cluster's stopped nodes again"),
			named("delete", "stop the cluster and remove everything it made: processes, mounts, links, rules, namespaces, files"),
			{
				Name:      "load",
				Usage:     "import image archives into every node of the cluster",
				UsageText: "skiff cluster load NAME IMAGE.tar...",
				Action: func(c *cli.Context) error {
					if c.NArg() < 2 {
						return inCommand(name+" load", errors.New("name the cluster and at least one image archive: skiff cluster load NAME IMAGE.tar"))
					}
					return run(c, &config.ClusterRequest{Op: "load", Name: c.Args().First(), Archives: c.Args().Tail()})
				},
			},
		},
	}
}

// clusterNodeCommand is the hidden first step of a cluster node's process;
// see pkg/cluster.ExecNode.
func clusterNodeCommand(a Actions) *cli.Command {
	return &cli.Command{
		Name:            config.ClusterNodeCommand,
		Hidden:          true,
		SkipFlagParsing: true,
		HideHelp:        true,
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			if len(args) < 4 || args[2] != "--" || a.ClusterNode == nil {
				return inCommand(config.ClusterNodeCommand, errors.New("internal command of skiff cluster: NODE-DIR HOSTNAME -- COMMAND..."))
			}
			return inCommand(config.ClusterNodeCommand, a.ClusterNode(args[0], args[1], args[3:]))
		},
	}
}
