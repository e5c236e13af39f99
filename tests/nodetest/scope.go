package nodetest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/skiff-io/skiff/pkg/layout"
)

// Killing skiff does not stop a node: by design the containerd shims are
// separate daemons that keep the pods running, the kubelet leaves tmpfs and
// bind mounts under its root dir, containerd leaves rootfs overlays and
// /dev/shm mounts under /run/skiff, and cni0, flannel.1, the pods' network
// namespaces, host-local IP reservations and iptables rules stay in the
// kernel and on disk. skiff-killall.sh (install.sh) undoes most of that, but
// only for the data dir baked in at install time, only for
// /var/lib/kubelet, and it kills the shims but not the container processes
// under them; so CleanupScope does the same work, scoped to one node's
// work dir, its pods and the paths it created.

// HostPathsToWatch are shared host paths a node may create; a cleanup
// removes those that did not exist before the node started.
var HostPathsToWatch = []string{layout.RunDir, "/run/flannel", "/var/lib/cni", "/etc/cni", "/opt/cni", layout.DefaultKubeletRootDir, "/run/netns"}

// HostSnapshot is the host state before a node started.
type HostSnapshot struct {
	Existed map[string]bool // HostPathsToWatch entries that existed
	Netns   map[string]bool // entries of /run/netns
}

// SnapshotHost records which HostPathsToWatch and network namespaces
// exist now.
func SnapshotHost() HostSnapshot {
	h := HostSnapshot{Existed: map[string]bool{}, Netns: map[string]bool{}}
	for _, p := range HostPathsToWatch {
		if _, err := os.Lstat(p); err == nil {
			h.Existed[p] = true
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		h.Netns[e.Name()] = true
	}
	return h
}

// NewNetns lists the cni-* network namespaces created since the snapshot.
func (h HostSnapshot) NewNetns() []string {
	var out []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if !h.Netns[e.Name()] && strings.HasPrefix(e.Name(), "cni-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Scope says which processes, mounts and state belong to the node(s)
// being cleaned up.
type Scope struct {
	Roots       []string        // work dirs of the nodes (data and kubelet dirs)
	PodUIDs     map[string]bool // pods the nodes ran
	AllKubepods bool            // every process in a kubepods cgroup is theirs
	Netns       []string        // /run/netns entries to remove
	HelperBins  []string        // dirs with bundled helpers (iptables tools)
}

// PodUIDsIn returns the UIDs of the pods a kubelet with root dir
// kubeletDir ran (the entries of its pods dir).
func PodUIDsIn(kubeletDir string) map[string]bool {
	uids := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(kubeletDir, "pods"))
	for _, e := range entries {
		uids[e.Name()] = true
	}
	return uids
}

// HelperBins returns the dirs the node of dataDir unpacked its bundled
// helpers to.
func HelperBins(dataDir string) []string {
	dirs, _ := filepath.Glob(filepath.Join(layout.New(dataDir).HelpersDir, "*", "bin"))
	return dirs
}

// OwnsPodCgroup says whether name is the cgroup of one of the scope's pods
// ("pod<uid>" for the cgroupfs driver, "...-pod<uid_with_underscores>.slice"
// for systemd), or of any pod with AllKubepods.
func (sc Scope) OwnsPodCgroup(name string) bool {
	i := strings.LastIndex(name, "pod")
	if i < 0 {
		return false
	}
	uid := strings.ReplaceAll(strings.TrimSuffix(name[i+3:], ".slice"), "_", "-")
	if !podUID.MatchString(uid) {
		return false
	}
	return sc.AllKubepods || sc.PodUIDs[uid]
}

// podUID matches the UIDs of API pods (UUIDs) and of static pods (hashes).
var podUID = regexp.MustCompile(`^[0-9a-f][0-9a-f-]{31,35}$`)

// Owns says whether the process belongs to the scope, not counting its
// ancestry.
func (sc Scope) Owns(p Proc) bool {
	for _, r := range sc.Roots {
		if p.Exe != "" && Under(p.Exe, r) {
			return true
		}
		for _, a := range p.Argv {
			if strings.Contains(a, r+"/") || strings.HasSuffix(a, r) {
				return true
			}
		}
	}
	if p.Exe != "" && Under(p.Exe, layout.RunDir) {
		return true
	}
	if p.IsShim() {
		return true
	}
	for _, line := range strings.Split(p.Cgroup, "\n") {
		for _, part := range strings.Split(line, "/") {
			if !sc.AllKubepods && sc.OwnsPodCgroup(part) {
				return true
			}
			// Without a live node, a container whose shim is gone (its
			// parent is init) is a leftover; containers of other
			// Kubernetes distributions still have their shim.
			if sc.AllKubepods && strings.HasPrefix(part, "kubepods") && p.PPID == 1 {
				return true
			}
		}
	}
	return false
}

// ScopeProcs returns the live processes of the scope and their
// descendants, never this process or its ancestors.
func ScopeProcs(sc Scope) []Proc { return Procs(sc.Owns) }

// KillScope SIGKILLs the scope's processes until none is left, and reports
// those that survive.
func KillScope(r Reporter, sc Scope) {
	for _, p := range KillAll(func() []Proc { return ScopeProcs(sc) }) {
		r.Errorf("cleanup: process %d (%s) survived SIGKILL", p.PID, p.Cmdline())
	}
}

// CleanupScope kills the scope's processes and removes what they left:
// mounts under its roots, /run/skiff and its network namespaces, empty pod
// cgroups, cni0 and flannel.1, the node's iptables rules, its CNI state and
// /run/skiff. existed tells which HostPathsToWatch existed before the node
// started (nil: keep them all, remove only their node-specific content);
// those that did not are removed, except /var/lib/kubelet, which is the
// caller's to judge.
func CleanupScope(r Reporter, scope Scope, existed map[string]bool) {
	KillScope(r, scope)

	// Container IDs (for the CNI state) before the state dirs go away:
	// containerd's tasks and the container cgroups of the (now empty) pods.
	ids := map[string]bool{}
	taskDir := filepath.Join(layout.ContainerdStateDir, "io.containerd.runtime.v2.task", "k8s.io")
	if entries, err := os.ReadDir(taskDir); err == nil {
		for _, e := range entries {
			ids[e.Name()] = true
		}
	}
	podCgroups := findPodCgroups(scope, ids)

	var prefixes []string
	prefixes = append(prefixes, scope.Roots...)
	prefixes = append(prefixes, layout.RunDir)
	for _, n := range scope.Netns {
		prefixes = append(prefixes, filepath.Join("/run/netns", n))
	}
	if existed != nil && !existed[layout.DefaultKubeletRootDir] {
		prefixes = append(prefixes, layout.DefaultKubeletRootDir)
	}
	if left := UnmountUnder(prefixes); len(left) > 0 {
		r.Errorf("mounts left after cleanup: %v", left)
	}
	for _, n := range scope.Netns {
		os.Remove(filepath.Join("/run/netns", n))
	}

	// Empty pod cgroups, deepest first.
	sort.Slice(podCgroups, func(i, j int) bool { return len(podCgroups[i]) > len(podCgroups[j]) })
	var busy []string
	for _, d := range podCgroups {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			busy = append(busy, d)
		}
	}
	if len(busy) > 0 {
		r.Logf("cleanup: %d pod cgroups could not be removed (e.g. %s)", len(busy), busy[0])
	}

	DeleteNodeLinks(r)
	RemoveNodeRules(r, scope.HelperBins)
	CleanCNIState(ids, existed)

	os.RemoveAll(layout.RunDir)
	for _, p := range HostPathsToWatch {
		if existed != nil && !existed[p] && p != layout.DefaultKubeletRootDir {
			os.RemoveAll(p)
		}
	}
}

// findPodCgroups returns the cgroup dirs of the scope's pods that hold no
// process any more (the pod dirs and their container dirs, in every
// hierarchy) and adds the container IDs found there to ids.
func findPodCgroups(scope Scope, ids map[string]bool) []string {
	var dirs []string
	hex64 := regexp.MustCompile(`[0-9a-f]{64}`)
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append(hierarchies, "/sys/fs/cgroup")
	seen := map[string]bool{}
	for _, h := range hierarchies {
		_ = filepath.WalkDir(h, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if seen[p] {
				return filepath.SkipDir
			}
			seen[p] = true
			if !scope.OwnsPodCgroup(d.Name()) {
				return nil
			}
			pod := []string{p}
			entries, _ := os.ReadDir(p)
			for _, e := range entries {
				if e.IsDir() {
					pod = append(pod, filepath.Join(p, e.Name()))
				}
			}
			for _, c := range pod {
				if procs, err := os.ReadFile(filepath.Join(c, "cgroup.procs")); err == nil && len(bytes.TrimSpace(procs)) > 0 {
					return filepath.SkipDir // still in use: not ours to touch
				}
			}
			dirs = append(dirs, pod...)
			for _, c := range pod[1:] {
				if id := hex64.FindString(filepath.Base(c)); id != "" {
					ids[id] = true
				}
			}
			return filepath.SkipDir
		})
	}
	return dirs
}
