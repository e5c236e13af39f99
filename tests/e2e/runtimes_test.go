package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// runtimesTemplate keeps the generated containerd config and adds a second
// runc handler, "sandboxed", from the values skiff generated.
const runtimesTemplate = `{{ template "base" . }}
# added by the e2e template
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.sandboxed]
  runtime_type = 'io.containerd.runc.v2'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.sandboxed.options]
    BinaryName = '{{ .BinDir }}/runc'
    Root = '{{ .StateDir }}/sandboxed'
`

// prepareRuntimes gives the node, before its first start, a crun on
// skiff's PATH (a script that logs its arguments and runs the bundled
// runc) and a containerd config template. It returns the fake crun's path
// and its log.
func prepareRuntimes(t *testing.T, s *server) (crun, crunLog string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	crun, crunLog = filepath.Join(bin, "crun"), filepath.Join(dir, "crun.log")
	script := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %[1]s
for runc in %[2]s/*/bin/runc; do exec "$runc" "$@"; done
echo "no bundled runc in %[2]s" >&2
exit 1
`, crunLog, s.paths().HelpersDir)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crun, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	l := s.paths().Agent
	if err := os.MkdirAll(l.ContainerdConfigDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.ContainerdConfigTemplate, []byte(runtimesTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	return crun, crunLog
}

// checkRuntimes checks what prepareRuntimes set up: containerd's config
// has a handler for the crun found and the template's, the bundled
// RuntimeClass crun and one for the template's handler run pods.
func (s *server) checkRuntimes(t *testing.T, crun, crunLog string) {
	l := s.paths().Agent
	if want := "containerd config rendered from the template " + l.ContainerdConfigTemplate; !strings.Contains(s.log(), want) {
		t.Errorf("the log does not say %q", want)
	}
	text, err := os.ReadFile(filepath.Join(l.ContainerdConfigDir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var config struct {
		Plugins map[string]struct {
			Containerd struct {
				DefaultRuntimeName string `toml:"default_runtime_name"`
				Runtimes           map[string]struct {
					Options struct {
						BinaryName string
					} `toml:"options"`
				} `toml:"runtimes"`
			} `toml:"containerd"`
		} `toml:"plugins"`
	}
	if err := toml.Unmarshal(text, &config); err != nil {
		t.Fatalf("containerd's config: %v\n%s", err, text)
	}
	cri := config.Plugins["io.containerd.cri.v1.runtime"].Containerd
	if got := cri.Runtimes["crun"].Options.BinaryName; got != crun {
		t.Errorf("handler crun runs %q, want %s", got, crun)
	}
	if got := cri.Runtimes["sandboxed"].Options.BinaryName; !strings.HasPrefix(got, s.paths().HelpersDir+"/") || filepath.Base(got) != "runc" {
		t.Errorf("the template's handler sandboxed runs %q, want the bundled runc", got)
	}
	if cri.DefaultRuntimeName != "runc" || !strings.Contains(string(text), "\n# added by the e2e template\n") {
		t.Errorf("config.toml is not the template's output over the generated config (default runtime %q):\n%s", cri.DefaultRuntimeName, text)
	}

	s.waitAddonState("runtimes", "Applied", 2*time.Minute)
	if handler := s.kubectl("get", "runtimeclass", "crun", "-o", "jsonpath={.handler}"); handler != "crun" {
		t.Errorf("RuntimeClass crun has handler %q", handler)
	}
	pod := func(name, class string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  runtimeClassName: %s
  terminationGracePeriodSeconds: 0
  containers:
  - {name: c, image: %s, command: [%s, sleep, infinity]}
`, name, class, webImageV1, webBinary)
	}
	s.apply(`apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: sandboxed}
handler: sandboxed
---
` + pod("rt-crun", "crun") + "---\n" + pod("rt-sandboxed", "sandboxed"))
	s.waitPod("default", "rt-crun", 2*time.Minute, podInfo.running)
	s.waitPod("default", "rt-sandboxed", 2*time.Minute, podInfo.running)
	if log, err := os.ReadFile(crunLog); err != nil || !strings.Contains(string(log), " create ") {
		t.Errorf("the pod of class crun did not run through crun (%v); its log:\n%s", err, log)
	}
	s.kubectl("delete", "pod", "rt-crun", "rt-sandboxed", "--wait=false")
}
