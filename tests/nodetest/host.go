package nodetest

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/skiff-io/skiff/pkg/mountinfo"
)

// MountPoints lists the mount points of this mount namespace.
func MountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo returns the mount point (the fifth field) of every line
// of a /proc/PID/mountinfo text.
func parseMountinfo(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, mountinfo.Unescape(fields[4]))
		}
	}
	return out
}

// UnmountUnder lazily unmounts every mount at or below the prefixes,
// deepest first, and returns those still mounted afterwards.
func UnmountUnder(prefixes []string) []string {
	match := func() []string {
		var ms []string
		for _, m := range MountPoints() {
			for _, p := range prefixes {
				if Under(m, p) {
					ms = append(ms, m)
					break
				}
			}
		}
		sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
		return ms
	}
	// Mounts stacked on one point need one pass each.
	for i := 0; i < 10; i++ {
		ms := match()
		if len(ms) == 0 {
			return nil
		}
		for _, m := range ms {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	return match()
}

// DeleteNodeLinks removes cni0 (and the veths on it), flannel.1 and
// flannel-v6.1, as skiff-killall.sh does.
func DeleteNodeLinks(r Reporter) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		r.Logf("cleanup: ip not installed; network links not removed")
		return
	}
	if out, err := exec.Command(ip, "-o", "link", "show", "master", "cni0").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			parts := strings.SplitN(line, ": ", 3)
			if len(parts) < 2 {
				continue
			}
			name, _, _ := strings.Cut(parts[1], "@")
			_ = exec.Command(ip, "link", "delete", name).Run()
		}
	}
	for _, link := range []string{"cni0", "flannel.1", "flannel-v6.1"} {
		if exec.Command(ip, "link", "show", link).Run() != nil {
			continue
		}
		if out, err := exec.Command(ip, "link", "delete", link).CombinedOutput(); err != nil {
			r.Errorf("cleanup: ip link delete %s: %v: %s", link, err, out)
		}
	}
}

// LookTool finds a tool on PATH or among the node's bundled helpers.
func LookTool(name string, helperBins []string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range helperBins {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// NodeRule matches the iptables-save lines of kube-proxy, flannel, the CNI
// plugins and skiff (the filter of skiff-killall.sh).
var NodeRule = regexp.MustCompile(`KUBE-|CNI-|(?i:flannel|skiff)`)

// RemoveNodeRules drops the iptables rules and chains NodeRule matches,
// and the nftables tables of kube-proxy and flannel.
func RemoveNodeRules(r Reporter, helperBins []string) {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		save, restore := LookTool(ipt+"-save", helperBins), LookTool(ipt+"-restore", helperBins)
		if save == "" || restore == "" {
			continue
		}
		out, err := exec.Command(save).Output()
		if err != nil || !NodeRule.Match(out) {
			continue
		}
		var kept bytes.Buffer
		for _, line := range strings.SplitAfter(string(out), "\n") {
			if !NodeRule.MatchString(line) {
				kept.WriteString(line)
			}
		}
		cmd := exec.Command(restore)
		cmd.Stdin = &kept
		if b, err := cmd.CombinedOutput(); err != nil {
			r.Errorf("cleanup: %s: %v: %s", restore, err, b)
		}
	}
	if nft := LookTool("nft", helperBins); nft != "" {
		out, err := exec.Command(nft, "list", "tables").Output()
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line) // table <family> <name>
			if len(f) != 3 || f[0] != "table" {
				continue
			}
			if n := strings.ToLower(f[2]); strings.Contains(n, "kube-proxy") || strings.Contains(n, "flannel") || strings.Contains(n, "skiff") {
				if b, err := exec.Command(nft, "delete", "table", f[1], f[2]).CombinedOutput(); err != nil {
					r.Errorf("cleanup: nft delete table %s %s: %v: %s", f[1], f[2], err, b)
				}
			}
		}
	}
}

// CleanCNIState removes the host-local IP reservations and cached CNI
// results of the given containers from /var/lib/cni; nothing when existed
// says the node created /var/lib/cni, which goes as a whole.
func CleanCNIState(ids map[string]bool, existed map[string]bool) {
	const dir = "/var/lib/cni"
	if existed != nil && !existed[dir] {
		return // removed with the other paths the node created
	}
	reservations, _ := filepath.Glob(filepath.Join(dir, "networks", "*", "*"))
	for _, f := range reservations {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if ids[strings.TrimSpace(id)] {
			os.Remove(f)
		}
	}
	results, _ := filepath.Glob(filepath.Join(dir, "results", "*"))
	for _, f := range results {
		for id := range ids {
			if strings.Contains(filepath.Base(f), id) {
				os.Remove(f)
				break
			}
		}
	}
}
