// Package checkconfig tells whether this host's kernel and cgroups can run
// a skiff node, naming each missing feature, before a user finds out from a
// failing pod sandbox.
package checkconfig

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Level says how much a missing feature matters.
type Level int

const (
	// Required features stop a node from working.
	Required Level = iota
	// Optional features only disable a choice (a backend, a snapshotter).
	Optional
)

// feature is one kernel option skiff relies on, and why.
type feature struct {
	option string
	level  Level
	why    string
	// module names the loaded-module directory that proves the feature
	// when no kernel configuration can be read.
	module string
}

var features = []feature{
	{"CONFIG_NAMESPACES", Required, "container isolation", ""},
	{"CONFIG_NET_NS", Required, "pod network namespaces", ""},
	{"CONFIG_PID_NS", Required, "container PID namespaces", ""},
	{"CONFIG_IPC_NS", Required, "container IPC namespaces", ""},
	{"CONFIG_UTS_NS", Required, "container hostnames", ""},
	{"CONFIG_CGROUPS", Required, "resource control", ""},
	{"CONFIG_CGROUP_CPUACCT", Required, "CPU accounting", ""},
	{"CONFIG_CGROUP_DEVICE", Required, "device access control", ""},
	{"CONFIG_CGROUP_FREEZER", Required, "pausing containers", ""},
	{"CONFIG_CGROUP_SCHED", Required, "CPU limits", ""},
	{"CONFIG_CPUSETS", Required, "CPU pinning", ""},
	{"CONFIG_MEMCG", Required, "memory limits", ""},
	{"CONFIG_CGROUP_PIDS", Required, "process limits", ""},
	{"CONFIG_KEYS", Required, "container keyrings", ""},
	{"CONFIG_VETH", Required, "pod network interfaces", "veth"},
	{"CONFIG_BRIDGE", Required, "the cni0 pod bridge", "bridge"},
	{"CONFIG_BRIDGE_NETFILTER", Required, "service traffic between pods on one bridge", "br_netfilter"},
	{"CONFIG_NF_CONNTRACK", Required, "service load balancing", "nf_conntrack"},
	{"CONFIG_NF_NAT", Required, "service and masquerade NAT", "nf_nat"},
	{"CONFIG_NETFILTER_XT_MATCH_CONNTRACK", Required, "kube-proxy iptables rules", "xt_conntrack"},
	{"CONFIG_NETFILTER_XT_MATCH_COMMENT", Required, "kube-proxy iptables rules", "xt_comment"},
	{"CONFIG_NETFILTER_XT_TARGET_MASQUERADE", Required, "pod traffic leaving the node", "xt_MASQUERADE"},
	{"CONFIG_POSIX_MQUEUE", Required, "container message queues", ""},
	{"CONFIG_OVERLAY_FS", Optional, "the overlayfs snapshotter (native is used without it)", "overlay"},
	{"CONFIG_VXLAN", Optional, "the flannel vxlan backend (host-gw works without it)", "vxlan"},
	{"CONFIG_NF_TABLES", Optional, "the nftables kube-proxy mode", "nf_tables"},
	{"CONFIG_SECCOMP", Optional, "seccomp profiles for pods", ""},
	{"CONFIG_USER_NS", Optional, "user-namespaced pods", ""},
}

// cgroupControllers are the controllers the kubelet needs enabled.
var cgroupControllers = []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer"}

// Result is one line of the report.
type Result struct {
	Name   string
	Level  Level
	OK     bool
	Detail string
}

// Report is the outcome of Check.
type Report struct {
	ConfigSource string // where the kernel configuration was read, or "" when none was found
	CgroupMode   string
	Results      []Result
}

// Missing lists the required features that are absent.
func (r *Report) Missing() []string {
	var out []string
	for _, res := range r.Results {
		if !res.OK && res.Level == Required {
			out = append(out, res.Name)
		}
	}
	return out
}

// Check inspects the host below root ("/" on a real host; tests pass a
// prepared tree). The kernel configuration comes from /proc/config.gz, else
// /boot/config-<running release>.
func Check(root string) (*Report, error) {
	r := &Report{}
	release := strings.TrimSpace(readFile(root, "proc/sys/kernel/osrelease"))
	cfg, source, err := readKernelConfig(root, release)
	if err != nil {
		return nil, err
	}
	r.ConfigSource = source
	modules := loadedModules(root)
	filesystems := readFile(root, "proc/filesystems")

	for _, f := range features {
		res := Result{Name: f.option, Level: f.level}
		switch {
		case cfg != nil:
			v := cfg[f.option]
			res.OK = v == "y" || v == "m"
			if res.OK {
				res.Detail = "=" + v
			} else {
				res.Detail = "not set; needed for " + f.why
			}
		case f.option == "CONFIG_OVERLAY_FS" && strings.Contains(filesystems, "overlay"):
			res.OK, res.Detail = true, "overlay in /proc/filesystems"
		case f.module != "" && modules[f.module]:
			res.OK, res.Detail = true, "module "+f.module+" loaded"
		default:
			// Without a configuration, absence of evidence is not proof:
			// report it but do not fail on it.
			res.Level = Optional
			res.Detail = "unknown (no kernel configuration found); needed for " + f.why
		}
		r.Results = append(r.Results, res)
	}

	mode, results := checkCgroups(root)
	r.CgroupMode = mode
	r.Results = append(r.Results, results...)
	return r, nil
}

// readKernelConfig returns the options set in the running kernel's
// configuration, or nil when the kernel does not expose one.
func readKernelConfig(root, release string) (map[string]string, string, error) {
	if f, err := os.Open(filepath.Join(root, "proc/config.gz")); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, "", fmt.Errorf("read /proc/config.gz: %w", err)
		}
		cfg, err := parseKernelConfig(zr)
		if err != nil {
			return nil, "", fmt.Errorf("read /proc/config.gz: %w", err)
		}
		return cfg, "/proc/config.gz", nil
	}
	if release != "" {
		path := "/boot/config-" + release
		if f, err := os.Open(filepath.Join(root, path)); err == nil {
			defer f.Close()
			cfg, err := parseKernelConfig(f)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", path, err)
			}
			return cfg, path, nil
		}
	}
	return nil, "", nil
}

func parseKernelConfig(r io.Reader) (map[string]string, error) {
	cfg := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, value, ok := strings.Cut(line, "="); ok && strings.HasPrefix(name, "CONFIG_") {
			cfg[name] = value
		}
	}
	return cfg, sc.Err()
}

func loadedModules(root string) map[string]bool {
	out := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(root, "sys/module"))
	for _, e := range entries {
		out[e.Name()] = true
	}
	return out
}

func readFile(root, path string) string {
	b, _ := os.ReadFile(filepath.Join(root, path))
	return string(b)
}

// checkCgroups reports the cgroup layout and whether each controller the
// kubelet needs is enabled.
func checkCgroups(root string) (string, []Result) {
	if b, err := os.ReadFile(filepath.Join(root, "sys/fs/cgroup/cgroup.controllers")); err == nil {
		have := map[string]bool{}
		for _, c := range strings.Fields(string(b)) {
			have[c] = true
		}
		// cgroup v2 folds cpuacct into cpu and devices/freezer into the core.
		var results []Result
		for _, c := range []string{"cpu", "cpuset", "memory", "pids"} {
			results = append(results, controllerResult(c, have[c], "in /sys/fs/cgroup/cgroup.controllers"))
		}
		return "v2 (unified)", results
	}

	enabled := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader([]byte(readFile(root, "proc/cgroups"))))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 4 && !strings.HasPrefix(fields[0], "#") {
			enabled[fields[0]] = fields[3] == "1"
		}
	}
	mode := "v1"
	if _, err := os.Stat(filepath.Join(root, "sys/fs/cgroup/unified")); err == nil {
		mode = "v1 (hybrid)"
	}
	var results []Result
	for _, c := range cgroupControllers {
		results = append(results, controllerResult(c, enabled[c], "enabled in /proc/cgroups"))
	}
	return mode, results
}

func controllerResult(name string, ok bool, where string) Result {
	res := Result{Name: "cgroup controller " + name, Level: Required, OK: ok, Detail: where}
	if !ok {
		res.Detail = "missing; the kubelet needs it"
	}
	return res
}

// Write prints the report, one feature per line, and a closing verdict.
func (r *Report) Write(w io.Writer) {
	source := r.ConfigSource
	if source == "" {
		source = "none found (checked /proc/config.gz and /boot/config-<release>); using loaded modules"
	}
	fmt.Fprintf(w, "kernel configuration: %s\ncgroups: %s\n\n", source, r.CgroupMode)
	results := append([]Result(nil), r.Results...)
	sort.SliceStable(results, func(i, j int) bool { return results[i].Level < results[j].Level })
	for _, res := range results {
		status := "ok     "
		switch {
		case !res.OK && res.Level == Required:
			status = "MISSING"
		case !res.OK:
			status = "warn   "
		}
		fmt.Fprintf(w, "%s %s (%s)\n", status, res.Name, res.Detail)
	}
	if missing := r.Missing(); len(missing) > 0 {
		fmt.Fprintf(w, "\n%d required kernel feature(s) missing: %s; a skiff node cannot run pods on this kernel\n", len(missing), strings.Join(missing, ", "))
		return
	}
	fmt.Fprintln(w, "\nall required kernel features are present")
}
