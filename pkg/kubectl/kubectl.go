// Package kubectl runs the upstream kubectl command, pointed at the skiff
// cluster's kubeconfig when the user has not chosen one.
package kubectl

import (
	"os"
	"strings"

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"

	"github.com/skiff-io/skiff/pkg/config"
)

// Run runs kubectl with args (without the program name) and exits with
// kubectl's status, as a stock kubectl would.
func Run(args []string) error {
	if os.Getenv("KUBECONFIG") == "" && !hasKubeconfigFlag(args) {
		if _, err := os.Stat(config.DefaultKubeconfig); err == nil {
			os.Setenv("KUBECONFIG", config.DefaultKubeconfig)
		}
	}
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	cmd.SetArgs(args)
	os.Exit(cli.Run(cmd))
	return nil
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return true
		}
	}
	return false
}
