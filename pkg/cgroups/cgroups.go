// Package cgroups owns a kubelet's own cgroup root on a host shared with
// other nodes (skiff cluster's nodes, the end-to-end tests' agents):
// making it in every mounted hierarchy, and removing its tree once its
// last task is gone.
package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FS is where the cgroup hierarchies are mounted.
const FS = "/sys/fs/cgroup"

// Hierarchies are the mounted hierarchies (v1 controllers or the v2
// unified one).
func Hierarchies() []string {
	var out []string
	candidates, _ := filepath.Glob(filepath.Join(FS, "*"))
	candidates = append(candidates, FS)
	for _, h := range candidates {
		if IsMount(h) {
			out = append(out, h)
		}
	}
	return out
}

// IsMount: dir is a cgroup (v1 or v2) hierarchy's mount.
func IsMount(dir string) bool {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return false
	}
	return st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC
}

// PrepareRoot creates root in every hierarchy: the kubelet refuses a
// --cgroup-root that does not exist, and a new cpuset cgroup needs its
// CPUs and memory nodes before it can hold tasks.
func PrepareRoot(root string) error {
	for _, h := range Hierarchies() {
		dir := filepath.Join(h, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create the cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				continue
			}
			if cur, _ := os.ReadFile(filepath.Join(dir, f)); strings.TrimSpace(string(cur)) != "" {
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
				return fmt.Errorf("set %s of the cgroup %s: %w", f, dir, err)
			}
		}
	}
	return nil
}

// RemoveRoot removes root's tree in every hierarchy, deepest first,
// retrying for 10 s while cgroups still hold tasks that are exiting.
func RemoveRoot(root string) error {
	var dirs []string
	for _, h := range Hierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, root), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	if len(dirs) == 0 {
		return nil
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var busy []string
	for attempt := 0; attempt < 50; attempt++ {
		busy = busy[:0]
		for _, d := range dirs {
			if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
				busy = append(busy, d)
			}
		}
		if len(busy) == 0 {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%d cgroups under %s could not be removed, e.g. %s", len(busy), root, busy[0])
}
