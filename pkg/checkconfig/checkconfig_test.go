package checkconfig

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// host builds a fake root with the given kernel options set to y.
type host struct {
	t    *testing.T
	root string
}

func newHost(t *testing.T) *host {
	h := &host{t: t, root: t.TempDir()}
	h.write("proc/sys/kernel/osrelease", "6.1.0-test\n")
	h.write("proc/cgroups", "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"+
		"cpuset\t3\t1\t1\ncpu\t1\t1\t1\ncpuacct\t2\t1\t1\nmemory\t4\t1\t1\ndevices\t5\t1\t1\nfreezer\t6\t1\t1\npids\t8\t1\t1\n")
	return h
}

func (h *host) write(path, content string) {
	h.t.Helper()
	full := filepath.Join(h.root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func allOptions(except ...string) string {
	var b strings.Builder
	b.WriteString("# Automatically generated file\n")
	for _, f := range features {
		if slices.Contains(except, f.option) {
			b.WriteString("# " + f.option + " is not set\n")
			continue
		}
		b.WriteString(f.option + "=y\n")
	}
	return b.String()
}

func (h *host) configGz(content string) {
	h.t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(content))
	_ = zw.Close()
	h.write("proc/config.gz", buf.String())
}

func check(t *testing.T, h *host) (*Report, string) {
	t.Helper()
	r, err := Check(h.root)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Write(&out)
	return r, out.String()
}

func TestCompleteKernelPasses(t *testing.T) {
	h := newHost(t)
	h.configGz(allOptions())
	r, out := check(t, h)
	if m := r.Missing(); len(m) != 0 {
		t.Fatalf("missing %v on a complete kernel:\n%s", m, out)
	}
	if r.ConfigSource != "/proc/config.gz" || r.CgroupMode != "v1" {
		t.Fatalf("source %q, cgroups %q", r.ConfigSource, r.CgroupMode)
	}
	if !strings.Contains(out, "all required kernel features are present") {
		t.Fatalf("no verdict:\n%s", out)
	}
}

func TestMissingFeaturesAreNamed(t *testing.T) {
	h := newHost(t)
	h.configGz(allOptions("CONFIG_BRIDGE", "CONFIG_VXLAN"))
	h.write("proc/cgroups", "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t4\t1\t0\n")
	r, out := check(t, h)
	missing := r.Missing()
	for _, want := range []string{"CONFIG_BRIDGE", "cgroup controller memory", "cgroup controller pids"} {
		if !slices.Contains(missing, want) {
			t.Errorf("Missing() = %v, want it to include %s", missing, want)
		}
	}
	if slices.Contains(missing, "CONFIG_VXLAN") {
		t.Error("an optional feature counted as required")
	}
	if !strings.Contains(out, "MISSING CONFIG_BRIDGE") || !strings.Contains(out, "warn    CONFIG_VXLAN") {
		t.Fatalf("report does not mark the features:\n%s", out)
	}
	if !strings.Contains(out, "cannot run pods on this kernel") {
		t.Fatalf("no failing verdict:\n%s", out)
	}
}

func TestBootConfigIsUsedWithoutProcConfig(t *testing.T) {
	h := newHost(t)
	h.write("boot/config-6.1.0-test", allOptions("CONFIG_MEMCG"))
	r, _ := check(t, h)
	if r.ConfigSource != "/boot/config-6.1.0-test" {
		t.Fatalf("source %q", r.ConfigSource)
	}
	if !slices.Equal(r.Missing(), []string{"CONFIG_MEMCG"}) {
		t.Fatalf("Missing() = %v", r.Missing())
	}
}

func TestWithoutConfigModulesAreEvidenceAndUnknownsDoNotFail(t *testing.T) {
	h := newHost(t)
	h.write("sys/module/bridge/parameters/x", "")
	h.write("proc/filesystems", "nodev\toverlay\n")
	r, out := check(t, h)
	if m := r.Missing(); len(m) != 0 {
		t.Fatalf("unknown features failed the check: %v", m)
	}
	byName := map[string]Result{}
	for _, res := range r.Results {
		byName[res.Name] = res
	}
	if !byName["CONFIG_BRIDGE"].OK || !byName["CONFIG_OVERLAY_FS"].OK {
		t.Fatalf("module/filesystem evidence ignored:\n%s", out)
	}
	if byName["CONFIG_VETH"].OK || !strings.Contains(byName["CONFIG_VETH"].Detail, "unknown") {
		t.Fatalf("veth without evidence should be unknown: %+v", byName["CONFIG_VETH"])
	}
}

func TestCgroupV2Controllers(t *testing.T) {
	h := newHost(t)
	h.configGz(allOptions())
	h.write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n")
	r, _ := check(t, h)
	if r.CgroupMode != "v2 (unified)" {
		t.Fatalf("mode %q", r.CgroupMode)
	}
	if !slices.Equal(r.Missing(), []string{"cgroup controller memory"}) {
		t.Fatalf("Missing() = %v", r.Missing())
	}
}
