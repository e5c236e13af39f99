// Package version reports which skiff build is running and which Kubernetes
// release it embeds.
package version

import "fmt"

// Version and GitCommit are overwritten at link time, e.g.
// -ldflags "-X github.com/skiff-io/skiff/pkg/version.Version=v0.1.0".
var (
	Version   = "v0.0.0-dev"
	GitCommit = ""
)

// Kubernetes is the upstream release whose components are compiled in; it
// changes only together with go.mod, so it is a constant rather than a flag.
const Kubernetes = "v1.37.2"

// String is the two-line text printed by "skiff --version".
func String() string {
	build := "skiff version " + Version
	if GitCommit != "" {
		build += " (" + GitCommit + ")"
	}
	return fmt.Sprintf("%s\nkubernetes %s", build, Kubernetes)
}
