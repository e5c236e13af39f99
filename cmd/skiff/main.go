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

func main() {
	args := os.Args
	if sub, ok := multiCall[filepath.Base(args[0])]; ok {
		args = append([]string{"skiff", sub}, args[1:]...)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// A second signal while shutting down means "now".
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		<-again
		os.Exit(130)
	}()

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
	}))
}
