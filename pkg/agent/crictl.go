package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/bundle"
	"github.com/skiff-io/skiff/pkg/layout"
)

// Crictl replaces the process with the bundled crictl, unpacked under
// dataDir and pointed at this node's containerd unless the user configured
// another endpoint. args[0] is the program name.
func Crictl(dataDir string, args []string) error {
	binDir, err := bundle.Extract(layout.New(dataDir).HelpersDir)
	if err != nil {
		return fmt.Errorf("extract crictl to %s: %w", dataDir, err)
	}
	env := os.Environ()
	if os.Getenv("CONTAINER_RUNTIME_ENDPOINT") == "" {
		env = append(env, "CONTAINER_RUNTIME_ENDPOINT=unix://"+containerd.DefaultAddress)
	}
	if os.Getenv("IMAGE_SERVICE_ENDPOINT") == "" {
		env = append(env, "IMAGE_SERVICE_ENDPOINT=unix://"+containerd.DefaultAddress)
	}
	crictl := filepath.Join(binDir, "crictl")
	if err := syscall.Exec(crictl, append([]string{"crictl"}, args[1:]...), env); err != nil {
		return fmt.Errorf("run %s: %w", crictl, err)
	}
	return nil
}
