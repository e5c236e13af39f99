package containerd

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/manifests"
)

// fakeExecutables makes an executable script of each name in dir.
func fakeExecutables(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindRuntimes(t *testing.T) {
	root := t.TempDir()
	operator, bin := filepath.Join(root, "operator"), filepath.Join(root, "bin")
	fakeExecutables(t, operator, "nvidia-container-runtime")
	fakeExecutables(t, bin, "crun", "nvidia-container-runtime", "containerd-shim-runsc-v1")
	// Neither a file that may not be run nor a directory is a runtime.
	if err := os.WriteFile(filepath.Join(bin, "nvidia-container-runtime-experimental"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(bin, "containerd-shim-kata-v2"), 0o755); err != nil {
		t.Fatal(err)
	}

	got := FindRuntimes([]string{filepath.Join(root, "absent"), operator, bin})
	want := []Runtime{
		{Handler: "crun", Type: "io.containerd.runc.v2", Path: filepath.Join(bin, "crun")},
		// The first directory holding it wins.
		{Handler: "nvidia", Type: "io.containerd.runc.v2", Path: filepath.Join(operator, "nvidia-container-runtime")},
		{Handler: "runsc", Type: "io.containerd.runsc.v1", Path: filepath.Join(bin, "containerd-shim-runsc-v1")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("found %+v\nwant %+v", got, want)
	}
	if got := FindRuntimes(nil); len(got) != 0 {
		t.Errorf("found %+v in no directory", got)
	}
}

func TestDefaultRuntimeDirs(t *testing.T) {
	t.Setenv("PATH", "/opt/x/bin:relative:/usr/bin:/opt/x/bin/")
	got := DefaultRuntimeDirs()
	want := []string{"/usr/local/nvidia/toolkit", "/opt/x/bin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/opt/kata/bin"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dirs %v, want %v", got, want)
	}
}

// Each runtime found gets a handler: runc-compatible programs run by the
// bundled shim with their own state dir, the others by their own shim.
func TestWriteConfigAddsFoundRuntimes(t *testing.T) {
	cfg := testConfig(t)
	bin := filepath.Join(t.TempDir(), "bin")
	fakeExecutables(t, bin, "crun", "containerd-shim-runsc-v1", "containerd-shim-kata-v2")
	cfg.RuntimeDirs = []string{bin}
	path, err := WriteConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	doc := readTOML(t, path)
	containerd := []string{"plugins", "io.containerd.cri.v1.runtime", "containerd"}
	rt := func(handler string, key ...string) []string {
		return append(append(append([]string{}, containerd...), "runtimes", handler), key...)
	}
	for _, c := range []struct {
		path []string
		want any
	}{
		{append(containerd, "default_runtime_name"), "runc"},
		{rt("runc", "options", "BinaryName"), "/opt/skiff/bin/runc"},
		{rt("crun", "runtime_type"), "io.containerd.runc.v2"},
		{rt("crun", "sandboxer"), "podsandbox"},
		{rt("crun", "options", "BinaryName"), filepath.Join(bin, "crun")},
		{rt("crun", "options", "Root"), filepath.Join(cfg.StateDir, "crun")},
		{rt("crun", "options", "SystemdCgroup"), false},
		{rt("runsc", "runtime_type"), "io.containerd.runsc.v1"},
		{rt("runsc", "runtime_path"), filepath.Join(bin, "containerd-shim-runsc-v1")},
		{rt("kata", "runtime_type"), "io.containerd.kata.v2"},
		{rt("kata", "runtime_path"), filepath.Join(bin, "containerd-shim-kata-v2")},
		{rt("kata", "privileged_without_host_devices"), true},
	} {
		if got := lookup(t, doc, c.path...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %#v, want %#v", strings.Join(c.path, "."), got, c.want)
		}
	}
	if _, ok := lookup(t, doc, rt("runsc")...).(map[string]any)["options"]; ok {
		t.Error("runsc has runc's options")
	}

	cfg.DefaultRuntime = "crun"
	if path, err = WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, readTOML(t, path), append(containerd, "default_runtime_name")...); got != "crun" {
		t.Errorf("default_runtime_name = %v with crun as the default runtime", got)
	}
}

// A default runtime the host lacks stops the start with what there is,
// before anything is written.
func TestWriteConfigRefusesAMissingDefaultRuntime(t *testing.T) {
	cfg := testConfig(t)
	bin := filepath.Join(t.TempDir(), "bin")
	fakeExecutables(t, bin, "crun")
	cfg.RuntimeDirs = []string{bin}
	for _, name := range []string{"nvidia", "youki"} {
		cfg.DefaultRuntime = name
		_, err := WriteConfig(cfg)
		want := `default runtime "` + name + `" was not found on this host; found: runc (bundled), crun (skiff looks for crun, nvidia, nvidia-experimental, runsc, kata on PATH`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want it to contain %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.ConfigDir, "config.toml")); !os.IsNotExist(err) {
		t.Errorf("config.toml written for a default runtime that is missing (%v)", err)
	}
	cfg.DefaultRuntime = "runc"
	if _, err := WriteConfig(cfg); err != nil {
		t.Errorf("runc named as the default: %v", err)
	}
}

// The bundled RuntimeClasses name exactly the handlers skiff gives the
// runtimes it finds.
func TestBundledRuntimeClassesMatchTheKnownRuntimes(t *testing.T) {
	out, err := manifests.Render("runtimes", manifests.Values{})
	if err != nil {
		t.Fatal(err)
	}
	var handlers []string
	for _, m := range regexp.MustCompile(`(?m)^handler: (\S+)$`).FindAllStringSubmatch(string(out), -1) {
		handlers = append(handlers, m[1])
	}
	if !reflect.DeepEqual(handlers, KnownRuntimes()) {
		t.Errorf("manifests/runtimes.yaml has classes for handlers %v, want %v", handlers, KnownRuntimes())
	}
}
