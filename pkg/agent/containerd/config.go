package containerd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/plugins/snapshots/overlay/overlayutils"
	"github.com/containerd/platforms"
	distref "github.com/distribution/reference"
	"github.com/pelletier/go-toml/v2"
	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// configVersion is the config schema of containerd v2.4 (version.ConfigVersion).
// Older versions would be migrated on every start, with a warning.
const configVersion = 4

// snapshotters are those compiled into containerd's builtins on Linux.
var snapshotters = []string{"overlayfs", "native", "btrfs", "zfs", "devmapper", "blockfile", "erofs"}

// Unix socket paths are limited to 107 bytes; the ttrpc socket appends
// ".ttrpc" to Address.
const maxAddressLen = 107 - len(".ttrpc")

// WriteConfig writes <ConfigDir>/config.toml for cfg and regenerates the
// registry hosts directory <ConfigDir>/certs.d from cfg.RegistriesFile. The
// config has a runtime handler for each runtime found in cfg.RuntimeDirs;
// when one of cfg.Templates exists, it is rendered over the generated
// config's values and written instead. It returns the path of config.toml.
//
// Mirrors with rewrite rules are written as they are: only a running
// Process puts its rewrite proxies in front of them.
func WriteConfig(cfg Config) (configPath string, err error) {
	configPath, _, err = writeConfig(cfg, nil)
	return configPath, err
}

// writeConfig is WriteConfig returning the resolved config (defaults
// applied, snapshotter chosen) that the caller then runs with. proxy, when
// not nil, is called with the registries before anything is written, to
// start their rewrite proxies.
func writeConfig(cfg Config, proxy func(*Registries) error) (string, Config, error) {
	c, err := resolve(cfg)
	if err != nil {
		return "", c, err
	}
	regs, err := LoadRegistries(c.RegistriesFile)
	if err != nil {
		return "", c, err
	}
	if proxy != nil {
		if err := proxy(regs); err != nil {
			return "", c, err
		}
	}
	tmplPath, tmplText, err := findTemplate(c.Templates)
	if err != nil {
		return "", c, err
	}
	if err := os.MkdirAll(c.ConfigDir, 0o700); err != nil {
		return "", c, fmt.Errorf("create containerd config dir: %w", err)
	}
	if err := writeHostsDir(certsDir(c), regs, c.RegistriesFile, c.NoDefaultEndpoint); err != nil {
		return "", c, err
	}
	found := FindRuntimes(c.RuntimeDirs)
	data, err := renderConfig(c, regs, found)
	if err != nil {
		return "", c, err
	}
	// The rendered config, decoded, only when a template made it: the
	// generated one defines no runtime beyond those found.
	var doc map[string]any
	if tmplPath != "" {
		if data, doc, err = renderTemplate(tmplPath, tmplText, TemplateValues{Config: c, Runtimes: found, Base: string(data)}); err != nil {
			return "", c, err
		}
	}
	if err := checkDefaultRuntime(c.DefaultRuntime, found, doc); err != nil {
		return "", c, err
	}
	path := filepath.Join(c.ConfigDir, "config.toml")
	if err := fileutil.WriteAtomic(path, data, 0o600); err != nil {
		return "", c, fmt.Errorf("write containerd config: %w", err)
	}
	if len(found) > 0 {
		var names []string
		for _, r := range found {
			names = append(names, r.Handler+" ("+r.Path+")")
		}
		logrus.Infof("container runtimes found on this host, offered to pods as RuntimeClass handlers beside runc: %s", strings.Join(names, ", "))
	}
	if tmplPath != "" {
		logrus.Infof("containerd config rendered from the template %s", tmplPath)
	}
	return path, c, nil
}

// resolve applies defaults, validates cfg and picks the snapshotter.
func resolve(cfg Config) (Config, error) {
	c := cfg.withDefaults()
	for _, p := range []struct{ what, path string }{
		{"root dir", c.RootDir}, {"config dir", c.ConfigDir}, {"CNI config dir", c.CNIConfDir}, {"log file", c.LogFile},
	} {
		if p.path == "" {
			return c, fmt.Errorf("%s is not set", p.what)
		}
	}
	paths := []struct{ what, path string }{
		{"root dir", c.RootDir}, {"state dir", c.StateDir}, {"config dir", c.ConfigDir},
		{"socket", c.Address}, {"bin dir", c.BinDir},
		{"CNI config dir", c.CNIConfDir}, {"log file", c.LogFile},
	}
	for _, dir := range c.CNIBinDirs {
		paths = append(paths, struct{ what, path string }{"CNI bin dir", dir})
	}
	for _, p := range paths {
		if p.path != "" && !filepath.IsAbs(p.path) {
			return c, fmt.Errorf("containerd %s %q is not an absolute path; give an absolute path", p.what, p.path)
		}
	}
	if len(c.Address) > maxAddressLen {
		return c, fmt.Errorf("containerd socket path %q is %d bytes long but unix sockets allow %d here; choose a shorter path", c.Address, len(c.Address), maxAddressLen)
	}
	if c.SandboxImage == "" {
		return c, errors.New("sandbox image is not set")
	}
	ref, err := distref.ParseDockerRef(c.SandboxImage)
	if err != nil {
		return c, fmt.Errorf("sandbox image %q is not a valid image reference (%v); give a name like docker.io/skiff/pause:3.10", c.SandboxImage, err)
	}
	// The CRI plugin pins the sandbox image by comparing full names with
	// the names images are stored under, which are normalized.
	c.SandboxImage = ref.String()
	if c.Snapshotter, err = chooseSnapshotter(c); err != nil {
		return c, err
	}
	return c, nil
}

// chooseSnapshotter returns c.Snapshotter if set and known, else overlayfs
// when an overlay mount really works in RootDir (it does not on top of
// another overlay, e.g. in some containers, or on filesystems without
// d_type), else native.
func chooseSnapshotter(c Config) (string, error) {
	if c.Snapshotter != "" {
		if !slices.Contains(snapshotters, c.Snapshotter) {
			return "", fmt.Errorf("unknown snapshotter %q; use one of %s", c.Snapshotter, strings.Join(snapshotters, ", "))
		}
		return c.Snapshotter, nil
	}
	// Supported mounts a small overlay in a temporary directory under the
	// root and unmounts it again: the same probe containerd's users rely on.
	if err := overlayutils.Supported(c.RootDir); err != nil {
		logrus.Warnf("overlayfs does not work in %s (%v); using the native snapshotter, which copies every layer and is slower", c.RootDir, err)
		return "native", nil
	}
	return "overlayfs", nil
}

func certsDir(c Config) string { return filepath.Join(c.ConfigDir, "certs.d") }

// renderConfig produces config.toml for a resolved config and the
// runtimes found on the host.
func renderConfig(c Config, regs *Registries, found []Runtime) ([]byte, error) {
	runcOptions := map[string]any{
		"SystemdCgroup": false, // no systemd here; cgroupfs like the kubelet
		// runc's state lives under our state dir so a host containerd's
		// runc root (/run/containerd/runc) never mixes with ours.
		"Root": filepath.Join(c.StateDir, "runc"),
	}
	if c.BinDir != "" {
		runcOptions["BinaryName"] = filepath.Join(c.BinDir, "runc")
	}
	cni := map[string]any{"max_conf_num": 1}
	if len(c.CNIBinDirs) > 0 {
		cni["bin_dirs"] = c.CNIBinDirs
	}
	if c.CNIConfDir != "" {
		cni["conf_dir"] = c.CNIConfDir
	}
	runtimes := map[string]any{
		BundledRuntime: map[string]any{
			"runtime_type":    runcShim,
			"sandboxer":       "podsandbox",
			"options":         runcOptions,
			"pod_annotations": []string{ShimGroupAnnotation},
		},
	}
	for _, r := range found {
		runtimes[r.Handler] = runtimeConfig(r, c.StateDir)
	}
	runtime := map[string]any{
		// Pods fail to start otherwise where containerd lacks
		// CAP_SYS_RESOURCE (e.g. on VMs and in containers): runc then may
		// not lower oom_score_adj below containerd's own.
		"restrict_oom_score_adj": true,
		"containerd": map[string]any{
			"default_runtime_name": c.DefaultRuntime,
			"runtimes":             runtimes,
		},
		"cni": cni,
	}
	registry := map[string]any{"config_path": certsDir(c)}
	if auths := regs.criAuths(); len(auths) > 0 {
		// containerd's hosts.toml cannot carry credentials; the CRI
		// registry configs still can (deprecated, but the only static
		// mechanism in containerd 2.4). Using them is deliberate, so the
		// deprecation must not show up as a CRI condition.
		registry["configs"] = auths
		runtime["ignore_deprecation_warnings"] = []string{"io.containerd.deprecation/cri-registry-configs"}
	}
	differ := "walking"
	if c.Snapshotter == "erofs" {
		differ = "erofs"
	}

	conf := map[string]any{
		"version": configVersion,
		"root":    c.RootDir,
		"state":   c.StateDir,
		// containerd exits instead of running without the pieces the
		// kubelet needs; a silently missing CRI plugin is much harder to
		// diagnose.
		"required_plugins": []string{
			"io.containerd.grpc.v1.cri",
			"io.containerd.snapshotter.v1." + c.Snapshotter,
		},
		// By default containerd waits forever for the metadata database
		// lock, so a leftover containerd would make us hang instead of fail.
		"timeouts": map[string]any{"io.containerd.timeout.bolt.open": "10s"},
		"plugins": map[string]any{
			"io.containerd.server.v1.grpc":  map[string]any{"address": c.Address},
			"io.containerd.server.v1.ttrpc": map[string]any{"address": c.Address + ".ttrpc"},
			"io.containerd.cri.v1.runtime":  runtime,
			"io.containerd.cri.v1.images": map[string]any{
				"snapshotter":   c.Snapshotter,
				"pinned_images": map[string]any{"sandbox": c.SandboxImage},
				"registry":      registry,
			},
			// The transfer service unpacks pulls made through it (ctr and,
			// by default, CRI). Its default unpack target is overlayfs,
			// which does not exist when we fall back to native, and without
			// it the CRI image plugin cannot load.
			"io.containerd.transfer.v1.local": map[string]any{
				"config_path": certsDir(c),
				"unpack_config": []map[string]any{{
					"platform":    platforms.Format(platforms.DefaultSpec()),
					"snapshotter": c.Snapshotter,
					"differ":      differ,
				}},
			},
			// Keep containerd's files under our dirs instead of /opt/containerd.
			"io.containerd.internal.v1.opt": map[string]any{"path": filepath.Join(c.RootDir, "opt")},
			// Skiff ships no NRI plugins, and NRI's fixed socket
			// /var/run/nri/nri.sock would clash with a host containerd.
			"io.containerd.nri.v1.nri": map[string]any{"disable": true},
		},
	}
	if sd := filepath.Join(c.StateDir, "s"); len(sd) <= 38 {
		// Shim sockets under our state dir rather than /run/containerd/s;
		// containerd only accepts a short directory (socket path limit).
		conf["plugins"].(map[string]any)["io.containerd.shim.v1.manager"] = map[string]any{"socket_dir": sd}
	}

	var buf bytes.Buffer
	buf.WriteString("# Generated by skiff each time containerd starts; changes here are overwritten.\n")
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(true)
	if err := enc.Encode(conf); err != nil {
		return nil, fmt.Errorf("encode containerd config: %w", err)
	}
	return buf.Bytes(), nil
}
