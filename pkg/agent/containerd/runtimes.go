package containerd

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// BundledRuntime is the handler of the runc skiff ships: pods without a
// RuntimeClass run with it unless Config.DefaultRuntime names another.
const BundledRuntime = "runc"

// ShimGroupAnnotation on a pod names a group of pods that share one runc
// shim on their node, where each pod would otherwise get its own: the
// bundled runtime passes it to the shim, which groups by it. An idle shim
// costs about 6 MiB.
const ShimGroupAnnotation = "io.containerd.runc.v2.group"

// SystemShimGroup is the shim group of the bundled addons' pods. Only
// kube-system may use the annotation (manifests/shim-groups.yaml): a pod
// elsewhere in the group would share a process with the system pods.
const SystemShimGroup = "skiff-system"

// runcShim is the runtime type of runc and of the programs that take its
// command line (crun, the NVIDIA runtime): the bundled shim runs them.
const runcShim = "io.containerd.runc.v2"

// Runtime is a runtime found on the host, offered to pods as a CRI runtime
// handler beside the bundled runc.
type Runtime struct {
	// Handler is the name a RuntimeClass gives as its handler, e.g. "crun".
	Handler string
	// Type is containerd's runtime type: io.containerd.runc.v2 for a
	// runc-compatible program, which the bundled shim runs, else the type
	// that names the runtime's own shim.
	Type string
	// Path is the executable found: the runc-compatible program, or the
	// runtime's shim.
	Path string
}

// RuncCompatible reports whether the bundled runc shim runs r, with Path in
// place of runc.
func (r Runtime) RuncCompatible() bool { return r.Type == runcShim }

// knownRuntimes are the runtimes skiff looks for, in the order they are
// listed, each by the program whose presence gives it away. The handler
// names are those of the bundled RuntimeClasses (manifests/runtimes.yaml).
var knownRuntimes = []struct{ handler, runtimeType, program string }{
	{"crun", runcShim, "crun"},
	{"nvidia", runcShim, "nvidia-container-runtime"},
	{"nvidia-experimental", runcShim, "nvidia-container-runtime-experimental"},
	// gVisor's shim runs runsc, which it looks up on containerd's PATH.
	{"runsc", "io.containerd.runsc.v1", "containerd-shim-runsc-v1"},
	{"kata", "io.containerd.kata.v2", "containerd-shim-kata-v2"},
}

// KnownRuntimes are the handler names skiff looks for on the host.
func KnownRuntimes() []string {
	names := make([]string, len(knownRuntimes))
	for i, k := range knownRuntimes {
		names[i] = k.handler
	}
	return names
}

// Where runtimes are installed outside the usual bin dirs: by the NVIDIA
// GPU operator, and by Kata's release tarball.
const (
	gpuOperatorDir = "/usr/local/nvidia/toolkit"
	kataDir        = "/opt/kata/bin"
)

// DefaultRuntimeDirs are the directories searched for runtimes when
// Config.RuntimeDirs is nil: the GPU operator's first (its runtime wins
// over a package's), then those of PATH, then the usual bin dirs and
// Kata's; absolute ones only, each once.
func DefaultRuntimeDirs() []string {
	dirs := slices.Concat([]string{gpuOperatorDir}, filepath.SplitList(os.Getenv("PATH")),
		[]string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", kataDir})
	var out []string
	for _, d := range dirs {
		if d = filepath.Clean(d); filepath.IsAbs(d) && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// FindRuntimes returns the known runtimes that have an executable in one
// of dirs, the first directory holding it winning.
func FindRuntimes(dirs []string) []Runtime {
	var found []Runtime
	for _, k := range knownRuntimes {
		for _, dir := range dirs {
			path := filepath.Join(dir, k.program)
			if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
				found = append(found, Runtime{Handler: k.handler, Type: k.runtimeType, Path: path})
				break
			}
		}
	}
	return found
}

// runtimeConfig is the CRI runtime entry of a runtime found on the host.
func runtimeConfig(r Runtime, stateDir string) map[string]any {
	entry := map[string]any{"runtime_type": r.Type, "sandboxer": "podsandbox"}
	if r.RuncCompatible() {
		entry["options"] = map[string]any{
			"BinaryName":    r.Path,
			"SystemdCgroup": false,
			// Its own state dir, as for the bundled runc, so that a host
			// containerd's never mixes with this one's.
			"Root": filepath.Join(stateDir, r.Handler),
		}
	} else {
		// containerd would look for the shim on its PATH; name the one found.
		entry["runtime_path"] = r.Path
	}
	if r.Handler == "kata" {
		// A privileged pod would otherwise get every host device passed
		// into its VM (Kata's recommended setting).
		entry["privileged_without_host_devices"] = true
	}
	return entry
}

// checkDefaultRuntime refuses a default handler that neither the bundled
// runc, a runtime found on the host nor the rendered config (which a
// template may have added to) provides.
func checkDefaultRuntime(name string, found []Runtime, rendered map[string]any) error {
	if name == BundledRuntime || slices.ContainsFunc(found, func(r Runtime) bool { return r.Handler == name }) {
		return nil
	}
	if _, ok := criRuntimes(rendered)[name]; ok {
		return nil
	}
	have := []string{BundledRuntime + " (bundled)"}
	for _, r := range found {
		have = append(have, r.Handler)
	}
	return fmt.Errorf("default runtime %q was not found on this host; found: %s (skiff looks for %s on PATH, in %s and in %s, and a config template can add any other runtime)",
		name, strings.Join(have, ", "), strings.Join(KnownRuntimes(), ", "), gpuOperatorDir, kataDir)
}

// criRuntimes returns the CRI runtimes table of a decoded config, or nil.
func criRuntimes(doc map[string]any) map[string]any {
	var cur any = doc
	for _, k := range []string{"plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes"} {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	m, _ := cur.(map[string]any)
	return m
}
