// Package kubectl runs the upstream kubectl command, pointed at the skiff
// cluster's kubeconfig when the user has not chosen one.
package kubectl

import (
	"os"
	"strings"

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
)

// Run runs kubectl with args (without the program name) and returns its
// exit status. Unless KUBECONFIG or --kubeconfig chooses another, kubectl
// uses kubeconfig, the server's admin kubeconfig, when it exists.
func Run(kubeconfig string, args []string) int {
	if os.Getenv("KUBECONFIG") == "" && !hasKubeconfigFlag(args) {
		if _, err := os.Stat(kubeconfig); err == nil {
			os.Setenv("KUBECONFIG", kubeconfig)
		}
	}
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	cmd.SetArgs(args)
	return cli.Run(cmd)
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
