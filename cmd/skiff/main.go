// Command skiff is the single skiff binary. It dispatches on its
// sub-command, or on the name it was invoked by (a `kubectl` symlink runs
// `skiff kubectl`).
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/skiff-io/skiff/pkg/agent"
	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/cli"
	"github.com/skiff-io/skiff/pkg/cluster"
	"github.com/skiff-io/skiff/pkg/kubectl"
	"github.com/skiff-io/skiff/pkg/server"
)

// multiCall maps the names skiff may be invoked by to sub-commands.
var multiCall = map[string]string{
	"kubectl":    "kubectl",
	"ctr":        "ctr",
	"containerd": "containerd",
	"crictl":     "crictl",
}

// tools are the sub-commands that run an embedded upstream program, which
// handles (or dies of) signals by itself.
var tools = map[string]bool{"kubectl": true, "ctr": true, "crictl": true, "containerd": true}

// orderlyStop returns a context cancelled by the first SIGINT or SIGTERM;
// a second one exits at once.
func orderlyStop() context.Context {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		<-again
		os.Exit(130)
	}()
	return ctx
}

func main() {
	args := os.Args
	if sub, ok := multiCall[filepath.Base(args[0])]; ok {
		args = append([]string{"skiff", sub}, args[1:]...)
	}

	ctx := context.Background()
	// The embedded tools get signals as their stock binaries do; skiff's
	// own commands turn the first into an orderly stop.
	if len(args) < 2 || !tools[args[1]] {
		ctx = orderlyStop()
	}

	os.Exit(cli.Run(ctx, args, cli.Actions{
		Server: server.Run,
		Agent:  agent.Run,
		Token:  server.Tokens,
		Kubectl: func(l cli.Local, args []string) error {
			return cli.ExitStatus(kubectl.Run(l.Kubeconfig, args))
		},
		Containerd: containerd.Main,
		Ctr:        containerd.CtrMain,
		Crictl: func(l cli.Local, args []string) error {
			return agent.Crictl(l.DataDir, args)
		},
		Cluster:     cluster.Run,
		ClusterNode: cluster.ExecNode,
	}))
}
