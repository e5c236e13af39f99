// Package containerd configures, runs and feeds the node's containerd: it
// writes containerd's config and registry hosts files, runs upstream
// containerd (and ctr) from the skiff binary, supervises the containerd child
// process, and imports image tarballs so nodes work without a registry.
package containerd

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/containerd/containerd/v2/cmd/ctr/app"
	"github.com/containerd/log"
	"github.com/urfave/cli/v3"

	// The same plugin set as upstream's containerd binary, CRI included
	// (builtins/cri.go, unless built with the no_cri tag).
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"

	"github.com/skiff-io/skiff/pkg/idlegc"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/startpages"
)

const (
	// DefaultAddress is the socket of skiff's containerd. It differs from
	// /run/containerd/containerd.sock so a host containerd can run beside it.
	DefaultAddress = layout.ContainerdSocket
	// DefaultStateDir holds containerd's transient state.
	DefaultStateDir = layout.ContainerdStateDir
	// DefaultRegistriesFile is where users configure mirrors and credentials.
	DefaultRegistriesFile = "/etc/skiff/registries.yaml"
	// Namespace is the containerd namespace the CRI plugin (and so the
	// kubelet) uses.
	Namespace = "k8s.io"
)

// Main runs upstream containerd in this process, exactly as containerd's own
// main does; args[0] is the program name. It is the entry point of
// `skiff containerd ...` and of a `containerd` link to skiff.
func Main(args []string) error {
	go startpages.After(context.Background(), startPagesDelay, func(r startpages.Released, err error) {
		if err != nil {
			log.L.Warnf("release the start-up pages: %v", err)
			return
		}
		log.L.Info(r.String())
	})
	go idlegc.Run(context.Background(), func(change string) { log.L.Info(change) })
	return command.App().Run(context.Background(), args)
}

// startPagesDelay is how long after containerd starts its start-up is
// taken to be over, and the pages only that used are given back
// (pkg/startpages): by then the node has imported its system images and
// started the addons' pods.
const startPagesDelay = 45 * time.Second

// CtrMain runs upstream ctr; args[0] is the program name. Unlike plain ctr
// it talks to skiff's containerd in the CRI namespace unless
// CONTAINERD_ADDRESS / CONTAINERD_NAMESPACE or the flags say otherwise.
func CtrMain(args []string) error {
	cmd := app.New()
	for _, f := range cmd.Flags {
		sf, ok := f.(*cli.StringFlag)
		if !ok {
			continue
		}
		switch sf.Name {
		case "address":
			sf.Value = DefaultAddress
		case "namespace":
			sf.Value = Namespace
		}
	}
	return cmd.Run(context.Background(), args)
}

// Config says where containerd keeps its data and which helpers it uses.
type Config struct {
	// RootDir holds containerd's persistent state, e.g.
	// <data-dir>/agent/containerd. Required.
	RootDir string
	// StateDir holds transient state; default DefaultStateDir.
	StateDir string
	// ConfigDir receives config.toml and certs.d. Required.
	ConfigDir string
	// Address is containerd's socket; default DefaultAddress.
	Address string
	// BinDir holds runc, containerd-shim-runc-v2 and the CNI plugins. It is
	// prepended to containerd's PATH so the shim is found there.
	BinDir string
	// CNIBinDirs hold the CNI plugins, searched in order; default BinDir.
	CNIBinDirs []string
	// CNIConfDir holds the CNI network config. Required.
	CNIConfDir string
	// SandboxImage is the pod sandbox (pause) image, e.g.
	// "docker.io/skiff/pause:3.10". It is imported locally, never pulled, and
	// pinned so image garbage collection keeps it. Required.
	SandboxImage string
	// Snapshotter is containerd's snapshotter; "" picks overlayfs when an
	// overlay mount works in RootDir and native otherwise.
	Snapshotter string
	// RegistriesFile holds mirrors and credentials; default
	// DefaultRegistriesFile. A missing file means no registry configuration.
	RegistriesFile string
	// NoDefaultEndpoint pulls a registry that has mirrors from its mirrors
	// only (--disable-default-registry-endpoint).
	NoDefaultEndpoint bool
	// LogFile receives containerd's output (appended). Required.
	LogFile string
	// Debug makes containerd log at debug level.
	Debug bool

	// DefaultRuntime is the runtime handler pods without a RuntimeClass
	// run with: "" or "runc" for the bundled runc, else a runtime found on
	// the host (see RuntimeDirs) or one a config template adds.
	DefaultRuntime string
	// RuntimeDirs are searched, in order, for the runtimes skiff knows
	// (crun, nvidia-container-runtime, gVisor's and Kata's shims); each one
	// found becomes a runtime handler. Nil means the directories of PATH
	// and the usual install locations (DefaultRuntimeDirs).
	RuntimeDirs []string
	// Templates are the config templates looked for, in order: the first
	// that exists is rendered as a Go template over TemplateValues and
	// written as containerd's config instead of the generated one.
	Templates []string
}

// withDefaults fills in the documented defaults. It does not choose the
// snapshotter, which needs a mount probe.
func (c Config) withDefaults() Config {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if len(c.CNIBinDirs) == 0 && c.BinDir != "" {
		c.CNIBinDirs = []string{c.BinDir}
	}
	if c.RegistriesFile == "" {
		c.RegistriesFile = DefaultRegistriesFile
	}
	if c.DefaultRuntime == "" {
		c.DefaultRuntime = BundledRuntime
	}
	if c.RuntimeDirs == nil {
		c.RuntimeDirs = DefaultRuntimeDirs()
	}
	return c
}
