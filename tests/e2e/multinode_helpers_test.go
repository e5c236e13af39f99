package e2e

// Helpers for multi-node tests: a second node runs `skiff agent` on this
// machine in its own network namespace (joined to the host's by a veth pair
// on a bridge the test creates) and its own mount namespace (its own
// /run/skiff, /run/netns, /var/lib/cni, /var/log and /sys views), with its
// pods under their own cgroup root. The cleanup removes all of it.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/cgroups"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/tests/nodetest"
)

// The test network: the host namespace is the first server node, on the
// bridge; each other node is a network namespace with one veth on the
// bridge.
const (
	bridgeName  = "skt0"
	bridgeIP    = "10.99.0.1"
	testNetBits = 24
	agentIface  = "eth0" // a node's end of its veth, in its namespace
	agentIP     = "10.99.0.2"
)

// nodeNet is one node's network namespace and the host end of its veth,
// on the bridge.
type nodeNet struct {
	netns, vethOut, ip string
}

// nodeNets are the namespaces the test network has room for: the agent's
// and, for several servers, two more.
var nodeNets = []nodeNet{
	{netns: "sktn2", vethOut: "skt0n2", ip: agentIP},
	{netns: "sktn3", vethOut: "skt0n3", ip: "10.99.0.3"},
	{netns: "sktn4", vethOut: "skt0n4", ip: "10.99.0.4"},
}

// agentNetns is the namespace of the address agents have in most tests.
var agentNetns = nodeNets[0].netns

// netFor is the namespace that has ip.
func netFor(t *testing.T, ip string) nodeNet {
	for _, n := range nodeNets {
		if n.ip == ip {
			return n
		}
	}
	t.Fatalf("no node namespace has the address %s", ip)
	return nodeNet{}
}

// ipCmd runs ip with args and returns its combined output.
func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// setupTestNetwork creates the bridge with the server's address and the
// agent's network namespace with its veth, loopback and default route.
// Call it after preflightNode (which kills leftover nodes and removes an
// interrupted run's network) and before newNode, so that /run/netns exists
// in the node's snapshot.
func setupTestNetwork(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ip", "nsenter", "unshare", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; multi-node tests need it (scripts/deps)", tool)
		}
	}
	netnsDirExisted := dirExists("/run/netns")
	removeMultiNodeLeftovers(t)
	testNetworkInUse = true
	t.Cleanup(func() {
		testNetworkInUse = false
		removeTestNetwork(t)
		if !netnsDirExisted {
			// ip netns add made /run/netns a mount of its own.
			_ = syscall.Unmount("/run/netns", syscall.MNT_DETACH)
			if err := os.Remove("/run/netns"); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Logf("cleanup: remove /run/netns: %v", err)
			}
		}
	})
	cidr := fmt.Sprintf("/%d", testNetBits)
	steps := [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", bridgeIP + cidr, "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	}
	for _, n := range nodeNets {
		steps = append(steps, [][]string{
			{"netns", "add", n.netns},
			{"link", "add", n.vethOut, "type", "veth", "peer", "name", agentIface, "netns", n.netns},
			{"link", "set", n.vethOut, "master", bridgeName},
			{"link", "set", n.vethOut, "up"},
			{"-n", n.netns, "link", "set", "lo", "up"},
			{"-n", n.netns, "addr", "add", n.ip + cidr, "dev", agentIface},
			{"-n", n.netns, "link", "set", agentIface, "up"},
			{"-n", n.netns, "route", "add", "default", "via", bridgeIP},
		}...)
	}
	for _, args := range steps {
		if _, err := ipCmd(args...); err != nil {
			t.Fatalf("setting up the test network: %v", err)
		}
	}
}

// testNetworkInUse: a test of this process set up the test network and
// has not cleaned it up yet.
var testNetworkInUse bool

// removeMultiNodeLeftovers removes what an interrupted multi-node test
// left once its nodes are gone: processes still in the agents' cgroup roots
// (/skt-*), those cgroups, the agent's network namespace and the bridge.
func removeMultiNodeLeftovers(t *testing.T) {
	if testNetworkInUse {
		return // this process's own, set up by the running test
	}
	roots := map[string]bool{}
	tops, _ := filepath.Glob(filepath.Join(cgroups.FS, "*", "skt-*"))
	for _, d := range tops {
		roots["/"+filepath.Base(d)] = true
	}
	var namespaces []string
	for _, n := range nodeNets {
		if _, err := os.Stat(filepath.Join("/run/netns", n.netns)); err == nil {
			namespaces = append(namespaces, n.netns)
		}
	}
	if len(roots) == 0 && len(namespaces) == 0 && !linkExists(bridgeName) {
		return
	}
	t.Logf("preflight: removing what an earlier multi-node test left: cgroup roots %v, namespaces %v, bridge %s", mapKeys(roots), namespaces, bridgeName)
	for root := range roots {
		removeAgentCgroups(t, root, true)
	}
	removeTestNetwork(t)
}

func mapKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// removeTestNetwork deletes the nodes' namespaces (their links, cni0 and
// flannel.1 inside, and their iptables rules go with them once no process
// is left in them) and the bridge, and waits until the kernel has removed
// the veths.
func removeTestNetwork(t *testing.T) {
	for _, n := range nodeNets {
		if _, err := os.Stat(filepath.Join("/run/netns", n.netns)); err == nil {
			if _, err := ipCmd("netns", "delete", n.netns); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	if linkExists(bridgeName) {
		if _, err := ipCmd("link", "delete", bridgeName); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	// A namespace is destroyed asynchronously after its last reference.
	for _, n := range nodeNets {
		deadline := time.Now().Add(30 * time.Second)
		for linkExists(n.vethOut) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if linkExists(n.vethOut) {
			if _, err := ipCmd("link", "delete", n.vethOut); err != nil {
				t.Errorf("cleanup: the veth %s outlived the namespace %s (a process still in it?): %v", n.vethOut, n.netns, err)
			}
		}
	}
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// --- the agent node --------------------------------------------------------

// agentNode is one `skiff agent` process in the test network.
type agentNode struct {
	t          *testing.T
	s          *server // the server it joins
	name       string
	ip         string
	net        nodeNet
	root       string // its temp dir: data, kubelet, state, log
	dataDir    string
	kubeletDir string
	stateDir   string // backing dirs of its private /var/lib/cni, /var/log
	cgroupRoot string // the kubelet's --cgroup-root, e.g. /skt-agent
	logPath    string
	args       []string
	env        []string
	cmd        *exec.Cmd
	exited     <-chan struct{}
	logStart   int
}

func agentCgroupRoot(nodeName string) string { return "/" + nodeName }

// nodeWrapper makes the agent's own views in a new, private mount namespace
// that is already in the agent's network namespace, then execs the agent.
//
// - sysfs describes the network namespace it was mounted in, so a new one
// is mounted; `ip netns exec` does the same but drops the cgroup
// hierarchies, which the kubelet needs, so they are kept by a bind mount.
// - The copies of the server node's mounts (container root filesystems,
// pod network namespaces, kubelet volumes) are dropped: they would keep
// the server's pods' resources alive after the server removed them.
// - /run/skiff (the containerd socket path is fixed) and /run/netns are
// private tmpfs; /var/lib/cni (CNI result cache) and /var/log (pod logs,
// which a kubelet garbage-collects for pods it does not know) are bind
// mounts of the node's own dirs.
const nodeWrapper = `#!/bin/sh
set -eu
# Its own host name, as on a machine of its own: servers' leases name it.
hostname "$SKT_HOSTNAME"
unmount_under() {
	awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
keep="$SKT_STATE/cgroup"
mkdir -p "$keep"
mount --rbind /sys/fs/cgroup "$keep"
umount -l /sys
mount -t sysfs sysfs /sys
mount --rbind "$keep" /sys/fs/cgroup
umount -l "$keep"
for p in $SKT_HIDE /run/skiff /run/netns; do unmount_under "$p"; done
for d in /run/skiff /run/netns; do
	mkdir -p "$d"
	mount -t tmpfs -o mode=0755 tmpfs "$d"
done
for d in /var/lib/cni /var/log; do
	own="$SKT_STATE/$(echo "$d" | tr / _)"
	mkdir -p "$own" "$d"
	mount --bind "$own" "$d"
done
exec "$@"
`

// newAgent prepares (but does not start) `skiff agent` as node name with
// address ip in the test network, joining s (or serverURL, when not "")
// with token (none when ""). The test images
// are in its images dir before the first start. The cleanup kills the
// agent, its containerd, shims and containers, and removes its cgroups;
// the namespaces go with the test network.
func newAgent(t *testing.T, s *server, name, ip, serverURL, token string, extra ...string) *agentNode {
	t.Helper()
	set := testImages(t)
	root := t.TempDir()
	a := &agentNode{
		t:          t,
		s:          s,
		name:       name,
		ip:         ip,
		net:        netFor(t, ip),
		root:       root,
		dataDir:    filepath.Join(root, "data"),
		kubeletDir: filepath.Join(root, "kubelet"),
		stateDir:   filepath.Join(root, "state"),
		cgroupRoot: agentCgroupRoot(name),
		logPath:    filepath.Join(root, "agent.log"),
	}
	noConfig := filepath.Join(root, "no-config.yaml")
	if err := os.WriteFile(noConfig, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if serverURL == "" {
		serverURL = fmt.Sprintf("https://%s:%d", bridgeIP, s.port)
	}
	a.args = []string{"agent",
		"--server", serverURL,
		"--data-dir", a.dataDir,
		"--config", noConfig,
		"--node-name", name,
		"--node-ip", ip,
		"--flannel-iface", agentIface,
		"--kubelet-arg=root-dir=" + a.kubeletDir,
		"--kubelet-arg=cgroup-root=" + a.cgroupRoot,
	}
	if token != "" {
		a.args = append(a.args, "--token", token)
	}
	a.args = append(a.args, extra...)

	if err := os.MkdirAll(a.paths().Agent.ImagesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, set.tars[webImageV1], filepath.Join(a.paths().Agent.ImagesDir, filepath.Base(set.tars[webImageV1])))

	t.Cleanup(func() {
		a.kill()
		cleanupAgent(t, a)
		if t.Failed() {
			a.dumpLog()
		}
	})
	return a
}

// wrapperPath writes the namespace wrapper once per agent.
// paths is where the agent keeps its files, as skiff itself has them.
func (a *agentNode) paths() layout.Layout { return layout.New(a.dataDir) }

func (a *agentNode) wrapperPath() string {
	p := filepath.Join(a.root, "node-wrapper.sh")
	if err := os.WriteFile(p, []byte(nodeWrapper), 0o755); err != nil {
		a.t.Fatal(err)
	}
	return p
}

// command is the agent's command line, run in its namespaces.
func (a *agentNode) command() *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{
		"--net=" + filepath.Join("/run/netns", a.net.netns), "--",
		"unshare", "--mount", "--uts", "--propagation", "private", "--",
		"/bin/sh", a.wrapperPath(), skiffBin,
	}, a.args...)...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG=",
		"SKT_HOSTNAME="+a.name,
		"SKT_STATE="+a.stateDir,
		// The server node's state: its temp dir and its runtime dir.
		"SKT_HIDE="+filepath.Dir(a.s.dataDir),
	)
	cmd.Env = append(cmd.Env, a.env...)
	return cmd
}

func (a *agentNode) start() {
	a.t.Helper()
	if err := os.MkdirAll(a.stateDir, 0o700); err != nil {
		a.t.Fatal(err)
	}
	cmd := a.command()
	exited, logStart, err := nodetest.StartLogged(cmd, a.logPath, "skiff "+redactToken(strings.Join(a.args, " ")))
	if err != nil {
		a.t.Fatal(err)
	}
	a.cmd, a.exited, a.logStart = cmd, exited, logStart
}

// runToExit starts the agent and waits up to timeout for it to exit; it
// returns the exit code and this run's output.
func (a *agentNode) runToExit(timeout time.Duration) (int, string) {
	a.t.Helper()
	a.start()
	select {
	case <-a.exited:
	case <-time.After(timeout):
		a.kill()
		a.t.Fatalf("skiff agent did not exit within %s; output:\n%s", timeout, tail(a.log()[a.logStart:], 5000))
	}
	code := a.cmd.ProcessState.ExitCode()
	a.cmd = nil
	return code, a.log()[a.logStart:]
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agentNode) stop() {
	a.t.Helper()
	if a.cmd == nil {
		return
	}
	if !nodetest.Terminate(a.cmd.Process, a.exited, 90*time.Second) {
		a.t.Fatal("skiff agent did not stop within 90s of SIGTERM")
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		a.t.Fatalf("skiff agent exited with %d after SIGTERM, want 0", code)
	}
	a.cmd = nil
}

func (a *agentNode) kill() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	<-a.exited
	a.cmd = nil
}

// alive fails the test at once if the agent process has exited.
func (a *agentNode) alive() {
	a.t.Helper()
	if a.exited == nil {
		a.t.Fatal("skiff agent was never started")
	}
	select {
	case <-a.exited:
		a.t.Fatalf("skiff agent exited (%v); log:\n%s", a.cmd.ProcessState, tail(a.log()[a.logStart:], 5000))
	default:
	}
}

func (a *agentNode) bind(t *testing.T) func() {
	old := a.t
	a.t = t
	return func() { a.t = old }
}

func (a *agentNode) log() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

func (a *agentNode) dumpLog() {
	l := a.log()
	var errs []string
	for _, line := range strings.Split(l, "\n") {
		if lower := strings.ToLower(line); strings.Contains(lower, "error") || strings.Contains(lower, "fail") || strings.HasPrefix(line, "E") {
			errs = append(errs, line)
		}
	}
	if len(errs) > 150 {
		errs = errs[len(errs)-150:]
	}
	a.t.Logf("error lines of agent %s's log (last %d):\n%s", a.name, len(errs), strings.Join(errs, "\n"))
	a.t.Logf("agent %s log (%s):\n%s", a.name, a.logPath, tail(l, 20000))
	if b, err := os.ReadFile(a.paths().Agent.ContainerdLog); err == nil {
		a.t.Logf("agent %s containerd log:\n%s", a.name, tail(string(b), 10000))
	}
}

// redactToken hides the secret of a K10 token in text that is logged.
func redactToken(s string) string {
	fields := strings.Fields(s)
	for i := range fields {
		if i > 0 && fields[i-1] == "--token" {
			fields[i] = "<token>"
		}
	}
	return strings.Join(fields, " ")
}

// --- agent cleanup -----------------------------------------------------------

// cleanupAgent kills what the agent left running (containerd, shims and
// the containers under its cgroup root: by design they outlive the agent)
// and removes its cgroups. Its mounts live in its own mount namespace and
// go with its last process; its links and rules go with its network
// namespace (removeTestNetwork).
func cleanupAgent(t *testing.T, a *agentNode) {
	for _, p := range nodetest.KillAll(func() []nodetest.Proc { return agentProcs(a.root, a.cgroupRoot) }) {
		t.Errorf("cleanup: agent process %d (%s) survived SIGKILL", p.PID, p.Cmdline())
	}
	removeAgentCgroups(t, a.cgroupRoot, false)
}

// agentProcs lists the live processes of an agent: those running from or
// naming its temp dir (the agent, its containerd and shims), those in its
// cgroup root (its containers), and their descendants; never this process
// or its ancestors.
func agentProcs(root, cgroupRoot string) []nodetest.Proc {
	return nodetest.Procs(func(p nodetest.Proc) bool {
		if p.Exe != "" && nodetest.Under(p.Exe, root) {
			return true
		}
		for _, arg := range p.Argv {
			if strings.Contains(arg, root+"/") || strings.HasSuffix(arg, root) {
				return true
			}
		}
		return p.InCgroup(cgroupRoot)
	})
}

// prepareAgentCgroups creates the agent's cgroup root in every hierarchy.
func prepareAgentCgroups(t *testing.T, cgroupRoot string) {
	t.Helper()
	if err := cgroups.PrepareRoot(cgroupRoot); err != nil {
		t.Fatal(err)
	}
}

// removeAgentCgroups removes the cgroup root's tree in every hierarchy.
// With stale (an earlier run's leftovers), it first kills the processes
// still in it.
func removeAgentCgroups(t *testing.T, cgroupRoot string, stale bool) {
	if stale {
		for _, p := range agentProcs("/nonexistent-skiff-agent-root", cgroupRoot) {
			t.Logf("preflight: killing process %d (%s) left in cgroup %s by an earlier run", p.PID, p.Cmdline(), cgroupRoot)
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	if err := cgroups.RemoveRoot(cgroupRoot); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// --- nodes and pods of a multi-node cluster -----------------------------

// waitNodes waits until exactly the named nodes are registered, all Ready
// with a pod CIDR, and returns them by name.
func (s *server) waitNodes(names []string, timeout time.Duration, alive ...func()) map[string]nodeInfo {
	s.t.Helper()
	var got map[string]nodeInfo
	eventually(s.t, timeout, func() error {
		s.alive()
		for _, f := range alive {
			f()
		}
		nodes, err := s.nodes()
		if err != nil {
			return err
		}
		m := map[string]nodeInfo{}
		var have []string
		for _, n := range nodes {
			m[n.Metadata.Name] = n
			have = append(have, n.Metadata.Name)
		}
		sort.Strings(have)
		want := append([]string(nil), names...)
		sort.Strings(want)
		if strings.Join(have, ",") != strings.Join(want, ",") {
			return fmt.Errorf("nodes registered: %v, want %v", have, want)
		}
		for _, n := range m {
			if n.condition("Ready") != "True" {
				return fmt.Errorf("node %s is not Ready: %+v", n.Metadata.Name, n.Status.Conditions)
			}
			if n.Spec.PodCIDR == "" {
				return fmt.Errorf("node %s has no spec.podCIDR yet", n.Metadata.Name)
			}
		}
		got = m
		return nil
	})
	return got
}

// node returns the named node.
func (s *server) node(name string) (nodeInfo, error) {
	out, err := s.kubectlRun(30*time.Second, "", "get", "node", name, "-o", "json")
	if err != nil {
		return nodeInfo{}, err
	}
	var n nodeInfo
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		return nodeInfo{}, fmt.Errorf("decoding node %s: %v", name, err)
	}
	return n, nil
}

// waitPodsOnNodes waits until the pods of the default namespace matching
// selector that are not terminating are all running and ready and spread
// over the nodes exactly as want says (node name -> count); it returns them
// by node, sorted by name.
func (s *server) waitPodsOnNodes(selector string, want map[string]int, timeout time.Duration) map[string][]podInfo {
	s.t.Helper()
	var got map[string][]podInfo
	eventually(s.t, timeout, func() error {
		s.alive()
		pods, err := s.pods("default", selector)
		if err != nil {
			return err
		}
		byNode := map[string][]podInfo{}
		for _, p := range pods {
			if p.Metadata.DeletionTimestamp != nil {
				continue
			}
			if err := p.running(); err != nil {
				return fmt.Errorf("on node %q: %v", p.Spec.NodeName, err)
			}
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
		count := map[string]int{}
		for n, ps := range byNode {
			count[n] = len(ps)
		}
		for n, c := range want {
			if count[n] != c {
				return fmt.Errorf("pods matching %q per node: %v, want %v", selector, count, want)
			}
		}
		for n, c := range count {
			if want[n] != c {
				return fmt.Errorf("pods matching %q per node: %v, want %v", selector, count, want)
			}
		}
		for _, ps := range byNode {
			sort.Slice(ps, func(i, j int) bool { return ps[i].Metadata.Name < ps[j].Metadata.Name })
		}
		got = byNode
		return nil
	})
	return got
}

// podGet runs `web get url` in pod and returns what it printed.
func (s *server) podGet(pod, url string) (string, error) {
	return s.kubectlRun(time.Minute, "", "exec", pod, "--", webBinary, "get", url)
}

// containersOn maps each running pod of the default namespace on node to
// its containers' "id:restartCount" list.
func containersOn(t *testing.T, s *server, node string) map[string]string {
	t.Helper()
	pods, err := s.pods("default", "")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, p := range pods {
		if p.Spec.NodeName != node || p.Status.Phase != "Running" || p.Metadata.DeletionTimestamp != nil {
			continue
		}
		var ids []string
		for _, c := range p.Status.ContainerStatuses {
			ids = append(ids, fmt.Sprintf("%s:%d", c.ContainerID, c.RestartCount))
		}
		sort.Strings(ids)
		m[p.Metadata.Name] = strings.Join(ids, ",")
	}
	return m
}

// dumpNetworkDiagnostics logs the links, addresses and routes of both
// namespaces.
func dumpNetworkDiagnostics(t *testing.T) {
	for _, args := range [][]string{
		{"-br", "addr"}, {"route"}, {"-d", "link", "show", "flannel.1"},
		{"-n", agentNetns, "-br", "addr"}, {"-n", agentNetns, "route"}, {"-n", agentNetns, "-d", "link", "show", "flannel.1"},
	} {
		out, err := ipCmd(args...)
		if err != nil {
			out += err.Error()
		}
		t.Logf("ip %s:\n%s", strings.Join(args, " "), out)
	}
}

// --- a fake server for the join tests ----------------------------------------

// fakeJoinServer answers /cacerts with its own CA, refuses everything else
// with 401, and records every request.
type fakeJoinServer struct {
	url   string
	caPEM []byte
	srv   *http.Server
	mu    sync.Mutex
	reqs  []fakeRequest
}

type fakeRequest struct {
	method, path string
	header       http.Header
}

// credentials says whether the request carried anything secret: the token
// (basic auth or a bearer) or the node's password.
func (r fakeRequest) credentials() []string {
	var found []string
	for k := range r.header {
		lk := strings.ToLower(k)
		if lk == "authorization" || strings.Contains(lk, "password") || strings.Contains(lk, "token") {
			found = append(found, k)
		}
	}
	sort.Strings(found)
	return found
}

// startFakeJoinServer serves HTTPS on ip with a certificate for ip, signed
// by a fresh CA, until the test ends.
func startFakeJoinServer(t *testing.T, ip string) *fakeJoinServer {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "impostor-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "impostor"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
	}, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeJoinServer{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	ln, err := tls.Listen("tcp", net.JoinHostPort(ip, "0"), &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.url = "https://" + ln.Addr().String()
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, fakeRequest{method: r.Method, path: r.URL.Path, header: r.Header.Clone()})
		f.mu.Unlock()
		if r.URL.Path == "/cacerts" {
			_, _ = w.Write(f.caPEM)
			return
		}
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

// requests returns the requests recorded so far and forgets them.
func (f *fakeJoinServer) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}
