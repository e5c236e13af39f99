package containerd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/skiff-io/skiff/pkg/layout"
)

func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	l := layout.New(dir).Agent
	return Config{
		RootDir:        l.ContainerdDir,
		ConfigDir:      l.ContainerdConfigDir,
		CNIConfDir:     l.CNIConfDir,
		LogFile:        l.ContainerdLog,
		StateDir:       filepath.Join(dir, "run"),
		BinDir:         "/opt/skiff/bin",
		SandboxImage:   "skiff/pause:3.10",
		Snapshotter:    "native",
		RegistriesFile: filepath.Join(dir, "registries.yaml"), // absent
		RuntimeDirs:    []string{},                            // none found, whatever the host has
		Templates:      []string{l.ContainerdConfigV3Template, l.ContainerdConfigTemplate},
	}
}

// lookup walks a decoded TOML document.
func lookup(t *testing.T, doc map[string]any, path ...string) any {
	t.Helper()
	var cur any = doc
	for i, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s is not a table", strings.Join(path[:i], "."))
		}
		if cur, ok = m[k]; !ok {
			t.Fatalf("%s is missing", strings.Join(path[:i+1], "."))
		}
	}
	return cur
}

func readTOML(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s is not valid TOML: %v\n%s", path, err, data)
	}
	return doc
}

func TestWriteConfig(t *testing.T) {
	cfg := testConfig(t)
	path, err := WriteConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantDir := cfg.ConfigDir
	if path != filepath.Join(wantDir, "config.toml") {
		t.Errorf("config path %s, want it in %s", path, wantDir)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config.toml mode %v, want 0600", st.Mode().Perm())
	}
	doc := readTOML(t, path)
	runtime := []string{"plugins", "io.containerd.cri.v1.runtime"}
	images := []string{"plugins", "io.containerd.cri.v1.images"}
	runc := append(append([]string{}, runtime...), "containerd", "runtimes", "runc")
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"version"}, int64(4)},
		{[]string{"root"}, cfg.RootDir},
		{[]string{"state"}, cfg.StateDir},
		{[]string{"required_plugins"}, []any{"io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.native"}},
		{append(runtime, "restrict_oom_score_adj"), true},
		{append(runtime, "containerd", "default_runtime_name"), "runc"},
		{append(runc, "runtime_type"), "io.containerd.runc.v2"},
		{append(runc, "options", "BinaryName"), "/opt/skiff/bin/runc"},
		{append(runc, "options", "SystemdCgroup"), false},
		{append(runc, "pod_annotations"), []any{"io.containerd.runc.v2.group"}},
		{append(runtime, "cni", "bin_dirs"), []any{"/opt/skiff/bin"}},
		{append(runtime, "cni", "conf_dir"), cfg.CNIConfDir},
		{append(images, "snapshotter"), "native"},
		{append(images, "pinned_images", "sandbox"), "docker.io/skiff/pause:3.10"},
		{append(images, "registry", "config_path"), filepath.Join(wantDir, "certs.d")},
		{[]string{"plugins", "io.containerd.transfer.v1.local", "config_path"}, filepath.Join(wantDir, "certs.d")},
		{[]string{"plugins", "io.containerd.server.v1.grpc", "address"}, DefaultAddress},
		{[]string{"plugins", "io.containerd.server.v1.ttrpc", "address"}, DefaultAddress + ".ttrpc"},
	} {
		if got := lookup(t, doc, c.path...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %#v, want %#v", strings.Join(c.path, "."), got, c.want)
		}
	}
	unpack := lookup(t, doc, "plugins", "io.containerd.transfer.v1.local", "unpack_config").([]any)
	if len(unpack) != 1 || unpack[0].(map[string]any)["snapshotter"] != "native" {
		t.Errorf("transfer unpack_config = %v, want the native snapshotter", unpack)
	}
	if _, ok := lookup(t, doc, images...).(map[string]any)["registry"].(map[string]any)["configs"]; ok {
		t.Error("registry configs written without any credentials")
	}
	if fi, err := os.Stat(filepath.Join(wantDir, "certs.d")); err != nil || !fi.IsDir() {
		t.Errorf("certs.d not created: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(wantDir, ".*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestWriteConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"relative root", func(c *Config) { c.RootDir = "data" }, `containerd root dir "data" is not an absolute path`},
		{"bad sandbox image", func(c *Config) { c.SandboxImage = "Bad Name" }, `sandbox image "Bad Name" is not a valid image reference`},
		{"no sandbox image", func(c *Config) { c.SandboxImage = "" }, "sandbox image is not set"},
		{"unknown snapshotter", func(c *Config) { c.Snapshotter = "aufs" }, `unknown snapshotter "aufs"; use one of overlayfs, native`},
		{"long socket", func(c *Config) { c.Address = "/run/" + strings.Repeat("x", 100) }, "unix sockets allow 101 here; choose a shorter path"},
		{"relative CNI bin dir", func(c *Config) { c.CNIBinDirs = []string{"/opt/cni/bin", "cni"} }, `containerd CNI bin dir "cni" is not an absolute path`},
		{"bad registries", func(c *Config) {
			if err := os.WriteFile(c.RegistriesFile, []byte("mirrors: [\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "registries file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t)
			c.change(&cfg)
			_, err := WriteConfig(cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// A CNI the user brings: its plugin dir is searched before the bundled one.
func TestWriteConfigSeveralCNIBinDirs(t *testing.T) {
	cfg := testConfig(t)
	cfg.CNIBinDirs = []string{"/opt/cni/bin", "/opt/skiff/bin"}
	path, err := WriteConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := lookup(t, readTOML(t, path), "plugins", "io.containerd.cri.v1.runtime", "cni", "bin_dirs")
	if want := []any{"/opt/cni/bin", "/opt/skiff/bin"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cni.bin_dirs = %#v, want %#v", got, want)
	}
}

func TestWriteConfigWithRegistries(t *testing.T) {
	cfg := testConfig(t)
	writeRegistries(t, cfg.RegistriesFile, goodRegistries(t))
	path, err := WriteConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	doc := readTOML(t, path)
	auth := lookup(t, doc, "plugins", "io.containerd.cri.v1.images", "registry", "configs", "mirror.example:5000", "auth").(map[string]any)
	if auth["username"] != "u" || auth["password"] != "p" {
		t.Errorf("auth = %v, want username u and password p", auth)
	}
	if got := lookup(t, doc, "plugins", "io.containerd.cri.v1.runtime", "ignore_deprecation_warnings"); !reflect.DeepEqual(got, []any{"io.containerd.deprecation/cri-registry-configs"}) {
		t.Errorf("ignore_deprecation_warnings = %v", got)
	}
	certs := filepath.Join(filepath.Dir(path), "certs.d")
	if _, err := os.Stat(filepath.Join(certs, "docker.io", "hosts.toml")); err != nil {
		t.Fatal(err)
	}

	// A host removed from the file loses its hosts dir on the next write.
	writeRegistries(t, cfg.RegistriesFile, "mirrors:\n  quay.io:\n    endpoint: [\"https://q.example\"]\n")
	if _, err := WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(certs)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"quay.io"}) {
		t.Errorf("certs.d holds %v, want only quay.io", names)
	}
	if _, ok := lookup(t, readTOML(t, path), "plugins", "io.containerd.cri.v1.images", "registry").(map[string]any)["configs"]; ok {
		t.Error("credentials kept after they were removed from the registries file")
	}
}

func TestChooseSnapshotterProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay needs root")
	}
	got, err := chooseSnapshotter(Config{RootDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got != "overlayfs" && got != "native" {
		t.Fatalf("chose %q", got)
	}
	t.Logf("probe chose %s", got)
}

// TestConfigAcceptedByContainerd has upstream containerd load the generated
// file (`containerd config dump`), so a misspelt key, which containerd
// would only warn about and ignore, fails here.
func TestConfigAcceptedByContainerd(t *testing.T) {
	cfg := testConfig(t)
	writeRegistries(t, cfg.RegistriesFile, goodRegistries(t))
	bin := filepath.Join(t.TempDir(), "bin")
	fakeExecutables(t, bin, "crun", "containerd-shim-runsc-v1", "containerd-shim-kata-v2")
	cfg.RuntimeDirs = []string{bin}
	path, err := WriteConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--config", path, "config", "dump")
	cmd.Env = append(os.Environ(), mainEnv+"=containerd")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "level=warning") || strings.Contains(stderr.String(), "level=error") {
		t.Errorf("containerd complained about the config:\n%s", stderr.String())
	}
	var doc map[string]any
	if err := toml.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("dump is not TOML: %v", err)
	}
	runtime := lookup(t, doc, "plugins", "io.containerd.cri.v1.runtime").(map[string]any)
	if runtime["restrict_oom_score_adj"] != true {
		t.Errorf("containerd reads restrict_oom_score_adj = %v", runtime["restrict_oom_score_adj"])
	}
	runc := lookup(t, runtime, "containerd", "runtimes", "runc").(map[string]any)
	if runc["sandboxer"] != "podsandbox" || lookup(t, runc, "options", "BinaryName") != "/opt/skiff/bin/runc" ||
		!reflect.DeepEqual(runc["pod_annotations"], []any{ShimGroupAnnotation}) {
		t.Errorf("containerd reads runc runtime %v", runc)
	}
	if got := lookup(t, runtime, "containerd", "runtimes", "crun", "options", "BinaryName"); got != filepath.Join(bin, "crun") {
		t.Errorf("containerd reads crun's BinaryName %v", got)
	}
	if got := lookup(t, runtime, "containerd", "runtimes", "runsc", "runtime_path"); got != filepath.Join(bin, "containerd-shim-runsc-v1") {
		t.Errorf("containerd reads runsc's runtime_path %v", got)
	}
	if got := lookup(t, runtime, "containerd", "runtimes", "kata", "privileged_without_host_devices"); got != true {
		t.Errorf("containerd reads kata's privileged_without_host_devices %v", got)
	}
	images := lookup(t, doc, "plugins", "io.containerd.cri.v1.images").(map[string]any)
	if images["snapshotter"] != "native" || lookup(t, images, "pinned_images", "sandbox") != "docker.io/skiff/pause:3.10" {
		t.Errorf("containerd reads images config %v", images)
	}
	if got := lookup(t, images, "registry", "configs", "mirror.example:5000", "auth", "username"); got != "u" {
		t.Errorf("containerd reads registry auth username %v", got)
	}
	if got := lookup(t, doc, "plugins", "io.containerd.nri.v1.nri", "disable"); got != true {
		t.Errorf("containerd reads nri disable = %v", got)
	}
}
