package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/pkg/cgroups"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/mountinfo"
)

// launch starts the node's skiff process in the node's network namespace,
// in new mount and UTS namespaces, in a session of its own so that it
// outlives this command; its output goes to the node's log.
func (c *Cluster) launch(n *Node) error {
	if err := cgroups.PrepareRoot(c.cgroupRoot(n)); err != nil {
		return err
	}
	for _, d := range []string{c.dataDir(n), c.kubeletDir(n), c.cniDir(n), c.varLogDir(n), c.stateDir(n)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create the dirs of node %s: %w", n.Name, err)
		}
	}
	logFile, err := os.OpenFile(c.logPath(n), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open the log of node %s: %w", n.Name, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "--- %s: skiff cluster starts %s\n", time.Now().Format(time.RFC3339), strings.Join(n.Argv, " "))

	cmd := exec.Command(c.Binary, append([]string{config.ClusterNodeCommand, c.nodeDir(n), n.Name, "--"}, n.Argv...)...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The caller's SKIFF_* settings are for the host's skiff: a node takes
	// its settings from its command line only.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SKIFF_") && !strings.HasPrefix(kv, "KUBECONFIG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if n.Role == RoleServer {
		// In the environment, not the command line, which every user of
		// the machine can read.
		agentToken, err := os.ReadFile(c.agentTokenPath())
		if err != nil {
			return fmt.Errorf("read the cluster's agent token: %w", err)
		}
		cmd.Env = append(cmd.Env, "SKIFF_AGENT_TOKEN="+strings.TrimSpace(string(agentToken)))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
	}
	if err := startInNetns(filepath.Join(netnsDir, n.Netns), cmd); err != nil {
		return fmt.Errorf("start node %s: %w", n.Name, err)
	}
	n.PID = cmd.Process.Pid
	_, n.StartTime, _ = procStat(n.PID)
	// Reaped by nobody: the process is meant to outlive this command.
	_ = cmd.Process.Release()
	return c.save()
}

// startInNetns starts cmd from a thread that has entered the network
// namespace at path: a forked child inherits its thread's namespaces. The
// thread stays locked and ends with its goroutine, so no other goroutine
// ever runs in the namespace.
func startInNetns(path string, cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("open the network namespace: %w", err)
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter the network namespace %s: %w", path, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

func (c *Cluster) kubeletDir(n *Node) string { return filepath.Join(c.nodeDir(n), "kubelet") }

// cniDir and varLogDir back the node's own /var/lib/cni (the CNI plugins'
// result cache) and /var/log (pod logs, which a kubelet removes for pods
// it does not know).
func (c *Cluster) cniDir(n *Node) string    { return filepath.Join(c.nodeDir(n), "var-lib-cni") }
func (c *Cluster) varLogDir(n *Node) string { return filepath.Join(c.nodeDir(n), "var-log") }
func (c *Cluster) stateDir(n *Node) string  { return filepath.Join(c.nodeDir(n), "state") }

// ExecNode runs inside a new node's fresh mount and UTS namespaces (in
// its network namespace already): it gives the node its own views, then
// replaces itself with argv.
//
//   - sysfs describes the network namespace it was mounted in, so a new
//     one is mounted; the cgroup hierarchies under it are kept by a bind
//     mount.
//   - The copies of the host's container and pod mounts, and of other
//     nodes', are dropped: holding them would keep those pods' resources
//     alive after their owners removed them.
//   - /run/skiff (the containerd socket's path is fixed) and /run/netns are
//     private tmpfs; /var/lib/cni and /var/log are the node's own dirs.
func ExecNode(nodeDir, hostname string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("no command to run")
	}
	// Nothing done here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the node's mounts private: %w", err)
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("set the node's host name: %w", err)
	}
	keep := filepath.Join(nodeDir, "state", "cgroup")
	if err := os.MkdirAll(keep, 0o700); err != nil {
		return err
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"keep the cgroup hierarchies", func() error { return unix.Mount("/sys/fs/cgroup", keep, "", unix.MS_BIND|unix.MS_REC, "") }},
		{"unmount the host's sysfs", func() error { return unix.Unmount("/sys", unix.MNT_DETACH) }},
		{"mount the node's sysfs", func() error {
			return unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}},
		{"put the cgroup hierarchies back", func() error { return unix.Mount(keep, "/sys/fs/cgroup", "", unix.MS_BIND|unix.MS_REC, "") }},
		{"drop the kept cgroup mount", func() error { return unix.Unmount(keep, unix.MNT_DETACH) }},
		{"drop other nodes' mounts", func() error { return hideForeignMounts(nodeDir) }},
	}
	for _, d := range []string{"/run/skiff", netnsDir} {
		d := d
		steps = append(steps, struct {
			what string
			do   func() error
		}{"mount a private " + d, func() error {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			return unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
		}})
	}
	for _, b := range [][2]string{{filepath.Join(nodeDir, "var-lib-cni"), "/var/lib/cni"}, {filepath.Join(nodeDir, "var-log"), "/var/log"}} {
		b := b
		steps = append(steps, struct {
			what string
			do   func() error
		}{"give the node its own " + b[1], func() error {
			if err := os.MkdirAll(b[1], 0o755); err != nil {
				return err
			}
			return unix.Mount(b[0], b[1], "", unix.MS_BIND, "")
		}})
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	// The node runs for long after the command that started it: it must
	// not keep what that command's caller left open (a lock such as
	// `flock FILE skiff cluster create` holds, a pipe a script waits on).
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close the caller's files for the node: %w", err)
	}
	if err := unix.Exec(argv[0], argv, os.Environ()); err != nil {
		return fmt.Errorf("run %s: %w", argv[0], err)
	}
	return nil
}

// foreignPrefixes hold other nodes' (the host's included) runtime state.
var foreignPrefixes = []string{"/var/lib/skiff", "/var/lib/kubelet", "/run/skiff", "/run/containerd", netnsDir}

// hideForeignMounts unmounts, in this mount namespace, the container root
// filesystems, pod volumes and namespace handles of every other node, and
// their runtime dirs; never a mount that holds nodeDir.
func hideForeignMounts(nodeDir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var targets []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		mountpoint := mountinfo.Unescape(fields[4])
		fstype := ""
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
				break
			}
		}
		if under(nodeDir, mountpoint) {
			continue // the node's own files live on it
		}
		foreign := fstype == "overlay" || fstype == "nsfs" ||
			strings.Contains(mountpoint, "/kubelet/pods/") || strings.Contains(mountpoint, "/io.containerd.")
		for _, p := range foreignPrefixes {
			if under(mountpoint, p) {
				foreign = true
			}
		}
		if foreign {
			targets = append(targets, mountpoint)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	// Deepest first; a lazy unmount of a parent may take children along.
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, t := range targets {
		if err := unix.Unmount(t, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", t, err)
		}
	}
	return nil
}

// under: p is dir or below it.
func under(p, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// --- the node's processes ------------------------------------------------

// procStat reads a process's state (field 3 of /proc/PID/stat, 'Z' for a
// zombie) and start time (field 22).
func procStat(pid int) (state byte, startTime uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces and parentheses; fields follow the
	// last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	startTime, err = strconv.ParseUint(fields[19], 10, 64)
	return fields[0][0], startTime, err
}

// running reports whether the node's skiff process is alive. A node that
// exits while the command that launched it still runs stays a zombie until
// that command ends (or for good where PID 1 reaps nothing): that is not
// running.
func (n *Node) running() bool {
	if n.PID <= 0 {
		return false
	}
	state, st, err := procStat(n.PID)
	return err == nil && state != 'Z' && st == n.StartTime
}

// processes lists the node's processes: those in its network namespace
// (skiff, containerd, the shims, host-network pods) and those in its
// cgroup root (its containers).
func (c *Cluster) processes(n *Node) ([]int, error) {
	var netnsIno uint64
	if st, err := os.Stat(filepath.Join(netnsDir, n.Netns)); err == nil {
		netnsIno = st.Sys().(*syscall.Stat_t).Ino
	}
	root := c.cgroupRoot(n)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if state, _, err := procStat(pid); err != nil || state == 'Z' {
			// Gone, or a zombie: nothing left to kill.
			continue
		}
		if netnsIno != 0 {
			if st, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && st.Sys().(*syscall.Stat_t).Ino == netnsIno {
				pids = append(pids, pid)
				continue
			}
		}
		if inCgroup(pid, root) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// inCgroup: the process is in root or below it in some hierarchy.
func inCgroup(pid int, root string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && under(parts[2], root) {
			return true
		}
	}
	return false
}

// stopNodes sends SIGTERM to the nodes' skiff processes at once (servers
// of one etcd cluster must go together, or the last would wait for a
// quorum), waits up to grace, then kills whatever of theirs is left:
// containerd, the shims and the containers outlive skiff by design.
func (c *Cluster) stopNodes(nodes []*Node, grace time.Duration) error {
	for _, n := range nodes {
		if n.running() {
			_ = syscall.Kill(n.PID, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(grace)
	for _, n := range nodes {
		for n.running() && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
	}
	var errs []error
	for _, n := range nodes {
		if err := c.killNode(n); err != nil {
			errs = append(errs, err)
		}
		n.PID, n.StartTime = 0, 0
	}
	if err := c.save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killNode kills every process of the node until none is left, then
// removes its cgroups.
func (c *Cluster) killNode(n *Node) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids, err := c.processes(n)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: processes %v survived SIGKILL", n.Name, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return cgroups.RemoveRoot(c.cgroupRoot(n))
}
