// Command node measures a whole single node, `skiff server` with its agent
// (containerd, kubelet, kube-proxy, flannel), on an empty data dir, per
// run:
//  1. seconds from exec to the node's Ready condition True (cold; /readyz
//     is recorded on the way), and on to the bundled addons' first pods
//     Ready: CoreDNS (kube-system/coredns, k8s-app=kube-dns) and the
//     ingress DaemonSet (kube-system/skiff-ingress);
//  2. resident memory after an idle period: skiff, its containerd child
//     and the containerd shims (the addons' pods have theirs), each summed
//     over its processes (VmRSS, and PSS);
//  3. seconds until a Deployment of N pause pods (the node's own image,
//     imagePullPolicy Never) has N pods Running, and pods per second;
//  4. resident memory again with the N pods running, after a settle period;
//  5. deletion of the Deployment until its pods and shims are gone, SIGTERM,
//     and a warm restart on the same data dir to node Ready and the addons
//     Ready again.
//
// With 0 pods, steps 3 to 5 up to the SIGTERM are skipped. It prints
// median and range over the runs and writes every raw number as JSON.
//
// With BENCH_ROLE=agent the node measured is an agent-only node: each run
// starts a control plane of its own first (`skiff server --disable-agent`
// on a fresh data dir, until /readyz), then `skiff agent` joins it on the
// same host, and steps 1 to 5 measure the agent: from its exec to node
// Ready, its memory (the agent process, its containerd, the shims; the
// addons' pods land on it, the only node) and a warm restart of the agent
// alone. The control plane's own memory is recorded beside it.
//
// Usage: node [runs] [idle-seconds] [pods]   (default 3 30 30)
//
// scripts/bench-node builds and runs it as root under the node lock; its
// header lists the environment variables. The program waits while any
// other skiff node runs on this host and never stops processes it did not
// start. It reaches the API with client-go, not `skiff kubectl`: every
// kubectl exec costs about 0.3 s of CPU, which on 2 cores would slow the
// node being measured. It links client-go only, not k8s.io/kubernetes.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/skiff-io/skiff/pkg/kubeclient"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/tests/nodetest"
)

const (
	readyTimeout  = 300 * time.Second // exec to node Ready (or the control plane's /readyz)
	addonsTimeout = 180 * time.Second // node Ready to CoreDNS and the ingress pod Ready
	podsTimeout   = 600 * time.Second // the Deployment's pods Running, or gone
	stopTimeout   = 120 * time.Second // SIGTERM to exit, then SIGKILL

	image  = "skiff.local/system/pause:3.10"
	deploy = "bench-pause"
)

// The addons whose first Ready pod ends a start: label selector and the
// container whose readiness probe counts after a warm restart.
var (
	coreDNS = addon{"k8s-app=kube-dns", "coredns"}
	ingress = addon{"app.kubernetes.io/name=skiff-ingress", "skiff-ingress"}
)

type addon struct{ selector, container string }

type options struct {
	runs, idle, pods, settle int
	warm                     bool
	role                     string
	bin                      string
	jsonPath, logs           string
	wait                     time.Duration
}

// node is a skiff process this program started.
type node struct {
	what   string
	cmd    *exec.Cmd
	exited <-chan struct{}
	log    string
	start  int // the log's size before this start
}

func (n *node) pid() int { return n.cmd.Process.Pid }

func (n *node) running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

type bench struct {
	options
	work       string
	port       int
	cpBin      string
	kubeconfig string
	node       *node // the node measured: skiff server, or skiff agent with BENCH_ROLE=agent
	cp         *node // with BENCH_ROLE=agent, the control plane it joined
	cpData     string
	started    bool // whether a node was started (and node-wide state may be cleaned)
	client     kubernetes.Interface
	nodeName   string
	before     nodetest.HostSnapshot
	dataDirs   []string // of every run, for the helpers' dirs
	kubelets   []string // kubelet root dirs of every run
	shimsBase  int      // the addons' shims, before the benchmark's pods
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-node: %v\n", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench-node runs a node: run it as root")
		os.Exit(1)
	}
	if fi, err := os.Stat(o.bin); err != nil || fi.Mode()&0o111 == 0 {
		fmt.Fprintf(os.Stderr, "no %s: run make build\n", o.bin)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b := &bench{options: o, before: nodetest.SnapshotHost()}
	err = b.main(ctx)
	interrupted := ctx.Err() != nil
	// A second signal during the cleanup ends the program at once.
	stop()
	var shown shownError
	if err != nil && !interrupted && !errors.As(err, &shown) {
		logf("%v", err)
	}
	b.cleanup(err != nil)
	switch {
	case interrupted:
		os.Exit(130)
	case err != nil:
		os.Exit(1)
	}
}

// shownError is an error already logged, with the lines that explain it.
type shownError struct{ msg string }

func (e shownError) Error() string { return e.msg }

func parseOptions(args []string) (options, error) {
	o := options{runs: 3, idle: 30, pods: 30, settle: 15, warm: true, role: "server", wait: 1200 * time.Second}
	for i, p := range []*int{&o.runs, &o.idle, &o.pods} {
		if i >= len(args) {
			break
		}
		n, err := strconv.Atoi(args[i])
		if err != nil || n < 0 || (i == 0 && n < 1) {
			return o, fmt.Errorf("usage: bench-node [runs] [idle-seconds] [pods]: %q is not a number of %s", args[i], []string{"runs (at least 1)", "seconds", "pods"}[i])
		}
		*p = n
	}
	if len(args) > 3 {
		return o, errors.New("usage: bench-node [runs] [idle-seconds] [pods]")
	}
	if v := os.Getenv("BENCH_SETTLE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("BENCH_SETTLE must be a number of seconds, not %q", v)
		}
		o.settle = n
	}
	if v := os.Getenv("BENCH_WAIT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("BENCH_WAIT must be a number of seconds, not %q", v)
		}
		o.wait = time.Duration(n) * time.Second
	}
	o.warm = os.Getenv("BENCH_WARM") != "0"
	if v := os.Getenv("BENCH_ROLE"); v != "" {
		o.role = v
	}
	if o.role != "server" && o.role != "agent" {
		return o, fmt.Errorf("BENCH_ROLE must be server or agent, not %q", o.role)
	}
	o.bin = os.Getenv("SKIFF_BIN")
	if o.bin == "" {
		o.bin = "bin/skiff"
	}
	o.bin, _ = filepath.Abs(o.bin)
	o.jsonPath = os.Getenv("BENCH_JSON")
	if o.jsonPath == "" {
		o.jsonPath = filepath.Join(os.TempDir(), "bench-node-"+time.Now().UTC().Format("20060102T150405Z")+".json")
	}
	o.logs = os.Getenv("BENCH_LOGS")
	if o.logs == "" {
		o.logs = strings.TrimSuffix(o.jsonPath, ".json") + ".logs"
	}
	return o, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench-node %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// logger reports the shared node cleanup's findings in the log.
type logger struct{}

func (logger) Logf(format string, args ...any)   { logf(format, args...) }
func (logger) Errorf(format string, args ...any) { logf(format, args...) }

// secs is the time since t0 in seconds, to the millisecond.
func secs(t0 time.Time) float64 { return round(time.Since(t0).Seconds(), 3) }

func ptr(v float64) *float64 { return &v }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (b *bench) main(ctx context.Context) error {
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("/tmp", "bench-node.")
	if err != nil {
		return err
	}
	if b.work, err = filepath.EvalSymlinks(work); err != nil {
		b.work = work
		return err
	}
	if b.port, err = nodetest.FreePort(); err != nil {
		return err
	}
	b.kubeconfig = filepath.Join(b.work, "kubeconfig.yaml")
	// A copy, so that a rebuild of bin/skiff during the runs cannot mix
	// versions. An agent's control plane runs from a copy of its own:
	// processes of one executable share its page-cache pages, and an
	// agent-only node does not share them with a control plane.
	bin := filepath.Join(b.work, "bin", "skiff")
	if err := copyExecutable(b.bin, bin); err != nil {
		return err
	}
	b.bin = bin
	if b.role == "agent" {
		b.cpBin = filepath.Join(b.work, "control-plane-bin", "skiff")
		if err := copyExecutable(bin, b.cpBin); err != nil {
			return err
		}
	}
	if err := b.waitForHost(ctx); err != nil {
		return err
	}
	logf("work dir %s, port %d, %d runs, %ds idle, %d pods, %ds settle", b.work, b.port, b.runs, b.idle, b.pods, b.settle)

	var runs []Run
	for r := 1; r <= b.runs; r++ {
		run, err := b.run(ctx, r)
		if err != nil {
			return err
		}
		runs = append(runs, run)
		b.teardownNode()
	}
	return b.report(runs)
}

// run is one cold start, the measurements, the stop and the warm restart.
func (b *bench) run(ctx context.Context, r int) (Run, error) {
	res := Run{Run: r}
	dir := filepath.Join(b.work, "run-"+strconv.Itoa(r))
	data, kubelet := filepath.Join(dir, "data"), filepath.Join(dir, "kubelet")
	b.dataDirs = append(b.dataDirs, data)
	b.kubelets = append(b.kubelets, kubelet)
	slog := filepath.Join(b.logs, fmt.Sprintf("run-%d-%s.log", r, b.role))
	for _, d := range []string{data, kubelet} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return res, err
		}
	}
	if b.role == "agent" {
		b.cpData = filepath.Join(dir, "control-plane")
		b.dataDirs = append(b.dataDirs, b.cpData)
		if err := os.MkdirAll(b.cpData, 0o700); err != nil {
			return res, err
		}
		cp, err := b.startControlPlane(ctx, filepath.Join(b.logs, fmt.Sprintf("run-%d-control-plane.log", r)))
		if err != nil {
			return res, err
		}
		res.ControlPlaneReadyzS = ptr(cp)
	}
	load := loadAverage()
	logf("run %d: cold start of the %s (load average %s)", r, b.role, strings.Join(load, " "))
	res.LoadavgBefore, _ = strconv.ParseFloat(load[0], 64)
	cold, err := b.startAndWait(ctx, data, kubelet, slog, time.Time{})
	if err != nil {
		return res, err
	}
	res.ColdReadyzS, res.ColdNodeReadyS, res.ColdClusterReadyS = cold.readyz, cold.nodeReady, cold.clusterReady
	res.ColdCoreDNSReadyS, res.ColdIngressReadyS = cold.coreDNS, cold.ingress
	if err := sleep(ctx, time.Duration(b.idle)*time.Second); err != nil {
		return res, err
	}
	idle := b.measureMem()
	res.Idle = &idle

	if b.pods > 0 {
		if err := b.runPods(ctx, &res); err != nil {
			return res, err
		}
		if err := sleep(ctx, time.Duration(b.settle)*time.Second); err != nil {
			return res, err
		}
		loaded := b.measureMem()
		res.Loaded = &loaded
		if err := b.deletePods(ctx, &res); err != nil {
			return res, err
		}
	}
	stopS, status := b.stopNode()
	res.StopS, res.StopExit = ptr(stopS), status

	if b.warm {
		logf("run %d: warm restart (load average %s)", r, strings.Join(loadAverage(), " "))
		// Heartbeats have whole seconds: after a second's pause, the old
		// kubelet's last one is older than the second the restart begins
		// in, and the new kubelet's first is not. (An agent stops in
		// 0.1 s, and an unchanged node heartbeats only every 5 minutes.)
		if err := sleep(ctx, time.Second); err != nil {
			return res, err
		}
		warm, err := b.startAndWait(ctx, data, kubelet, slog, time.Now().Truncate(time.Second))
		if err != nil {
			return res, err
		}
		res.WarmReadyzS, res.WarmNodeReadyS, res.WarmClusterReadyS = warm.readyz, warm.nodeReady, warm.clusterReady
		res.WarmCoreDNSReadyS, res.WarmIngressReadyS = warm.coreDNS, warm.ingress
		stopS, _ := b.stopNode()
		res.WarmStopS = ptr(stopS)
	}
	b.stopControlPlane()

	paths := layout.New(data)
	res.HelpersDirKiB = diskKiB(paths.HelpersDir)
	res.DataDirKiB = diskKiB(data)
	_ = copyFile(paths.Agent.ContainerdLog, filepath.Join(b.logs, fmt.Sprintf("run-%d-containerd.log", r)), 0o644)
	return res, nil
}

// --- processes ---------------------------------------------------------------

// foreignNodes lists the skiff processes that are not this program's and
// run a server (even --disable-agent: the controller-manager and scheduler
// ports are fixed, and it would share the CPUs), an agent or skiff's
// containerd, and the containerd shims of pods that are not ours (their
// node may be restarting under them). A control plane alone on ports of
// its own (the datastore benchmark's) shares nothing with a node.
func (b *bench) foreignNodes() []nodetest.Proc {
	ours := map[int]bool{}
	for _, n := range []*node{b.node, b.cp} {
		if n != nil {
			ours[n.pid()] = true
		}
	}
	var out []nodetest.Proc
	for _, p := range nodetest.ListProcs() {
		if ours[p.PID] || (b.node != nil && p.PPID == b.node.pid()) || nodetest.Under(p.Exe, b.work) || p.State == 'Z' {
			continue
		}
		switch {
		case p.IsNode():
		case p.IsSkiff() && p.Argv[1] == "server" && !ownPorts(p):
		case p.IsShim() && !nodetest.Under(p.Exe, b.work):
		default:
			continue
		}
		out = append(out, p)
	}
	return out
}

// ownPorts says whether p is a server without a node whose
// controller-manager and scheduler are moved off 10257 and 10259.
func ownPorts(p nodetest.Proc) bool {
	var cm, sched bool
	for _, a := range p.Argv {
		cm = cm || strings.HasPrefix(a, "--kube-controller-manager-arg=secure-port=")
		sched = sched || strings.HasPrefix(a, "--kube-scheduler-arg=secure-port=")
	}
	return p.HasArg("--disable-agent", "--disable-agent=true") && cm && sched
}

func describe(procs []nodetest.Proc) {
	for _, p := range procs {
		line := fmt.Sprintf("%d %s", p.PID, p.Cmdline())
		if len(line) > 200 {
			line = line[:200]
		}
		fmt.Fprintln(os.Stderr, line)
	}
}

// waitForHost waits (polling every 20 s, up to BENCH_WAIT) until no other
// skiff server, agent, containerd or shim runs on this host.
func (b *bench) waitForHost(ctx context.Context) error {
	var waited time.Duration
	for {
		others := b.foreignNodes()
		if len(others) == 0 {
			break
		}
		if waited >= b.wait {
			msg := fmt.Sprintf("another skiff server is still running after %ds; giving up (not touching it):", int(b.wait.Seconds()))
			logf("%s", msg)
			describe(others)
			return shownError{msg}
		}
		if waited == 0 {
			logf("another skiff server runs on this host; waiting for it to finish:")
			describe(others)
		}
		if err := sleep(ctx, 20*time.Second); err != nil {
			return err
		}
		waited += 20 * time.Second
	}
	if waited > 0 {
		logf("host free after %ds", int(waited.Seconds()))
	}
	return nil
}

// shimPIDs are the containerd shims started from helpers extracted under
// the work dir.
func (b *bench) shimPIDs() []int {
	var out []int
	for _, p := range nodetest.ListProcs() {
		if b.ownShim(p) && p.State != 'Z' {
			out = append(out, p.PID)
		}
	}
	return out
}

func (b *bench) ownShim(p nodetest.Proc) bool {
	return nodetest.Under(p.Exe, b.work) && strings.HasPrefix(filepath.Base(p.Exe), "containerd-shim")
}

// containerdPID is the `skiff containerd` child of the node, or 0.
func (b *bench) containerdPID() int {
	if b.node == nil {
		return 0
	}
	for _, p := range nodetest.Children(nodetest.ListProcs(), b.node.pid()) {
		if len(p.Argv) > 1 && p.Argv[1] == "containerd" {
			return p.PID
		}
	}
	return 0
}

func (b *bench) measureMem() Mem {
	cp := 0
	if b.cp != nil {
		cp = b.cp.pid()
	}
	m := readMem(b.node.pid(), b.containerdPID(), b.shimPIDs(), cp)
	logf("memory: %s", m)
	return m
}

// start runs the skiff binary bin with args, its output appended to log.
func (b *bench) start(what, bin, log string, args ...string) (*node, error) {
	cmd := exec.Command(bin, args...)
	exited, start, err := nodetest.StartLogged(cmd, log, "skiff "+strings.Join(args, " "))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	b.started = true
	return &node{what: what, cmd: cmd, exited: exited, log: log, start: start}, nil
}

// failed logs the end of n's log and returns an error saying what.
func (n *node) failed(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	logf("%s; last lines of %s:", msg, n.log)
	fmt.Fprint(os.Stderr, lastLines(n.log, 30))
	return shownError{msg}
}

func lastLines(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// terminate sends SIGTERM to n, and SIGKILL if it still runs 120 s later;
// it returns n's exit status.
func terminate(n *node) int {
	if !nodetest.Terminate(n.cmd.Process, n.exited, stopTimeout) {
		logf("%s %d still running %ds after SIGTERM: SIGKILL", n.what, n.pid(), int(stopTimeout.Seconds()))
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	return nodetest.ExitStatus(n.cmd.ProcessState)
}

// stopNode sends SIGTERM and waits for the node (server or agent) and its
// containerd to exit (SIGKILL after 120 s); it returns the seconds to the
// node's exit and its exit status.
func (b *bench) stopNode() (float64, int) {
	if b.node == nil {
		return 0, 0
	}
	ctr := b.containerdPID()
	t0 := time.Now()
	status := terminate(b.node)
	elapsed := secs(t0)
	if ctr != 0 {
		for i := 0; i < 300 && nodetest.Alive(ctr); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if nodetest.Alive(ctr) {
			logf("containerd %d outlived the %s by 30s: SIGKILL", ctr, b.role)
			_ = syscall.Kill(ctr, syscall.SIGKILL)
		}
	}
	logf("%s %d stopped in %ss, exit status %d", b.role, b.node.pid(), num(elapsed), status)
	b.node = nil
	return elapsed, status
}

func (b *bench) stopControlPlane() {
	if b.cp == nil {
		return
	}
	terminate(b.cp)
	logf("control plane %d stopped", b.cp.pid())
	b.cp = nil
}

// --- the API -----------------------------------------------------------------

// loadClient builds the client of the admin kubeconfig once the server has
// written it.
func (b *bench) loadClient() bool {
	if b.client != nil {
		return true
	}
	if fi, err := os.Stat(b.kubeconfig); err != nil || fi.Size() == 0 {
		return false
	}
	rc, err := kubeclient.Config(b.kubeconfig)
	if err != nil {
		return false
	}
	// Polling ten times a second must not wait for client-side throttling.
	rc.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	rc.Timeout = 5 * time.Second
	rc.WarningHandler = rest.NoWarnings{}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return false
	}
	b.client = client
	return true
}

func (b *bench) readyz(ctx context.Context) bool {
	body, err := b.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil && string(body) == "ok"
}

// nodeReadySince says whether a node has a Ready condition True with a
// heartbeat at or after since (on a warm restart the node object still
// says Ready from before).
func (b *bench) nodeReadySince(ctx context.Context, since time.Time) bool {
	nodes, err := b.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(since) {
				return true
			}
		}
	}
	return false
}

// addonReady says whether a kube-system pod of the addon is Ready. Pods
// outlive a restart of skiff and the restarted kubelet leaves their Ready
// condition as it was, so after a warm restart (cold false) the kubelet's
// readiness probe of the container must also have passed since the
// restart: its prober_probe_total counter (through the apiserver's node
// proxy) starts from zero with the process.
func (b *bench) addonReady(ctx context.Context, a addon, cold bool) bool {
	pods, err := b.client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: a.selector})
	if err != nil {
		return false
	}
	ready := false
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
		}
	}
	if !ready || cold {
		return ready
	}
	if b.nodeName == "" {
		nodes, err := b.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(nodes.Items) == 0 {
			return false
		}
		b.nodeName = nodes.Items[0].Name
	}
	metrics, err := b.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", b.nodeName, "proxy/metrics/probes").DoRaw(ctx)
	if err != nil {
		return false
	}
	return probePassed(metrics, a.container)
}

// probePassed says whether the kubelet's probe metrics count a successful
// readiness probe of container.
func probePassed(metrics []byte, container string) bool {
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "prober_probe_total{") && strings.Contains(line, `container="`+container+`"`) &&
			strings.Contains(line, `probe_type="Readiness"`) && strings.Contains(line, `result="successful"`) {
			return true
		}
	}
	return false
}

// --- starting and stopping -----------------------------------------------------

// startControlPlane starts, for an agent-only node, `skiff server
// --disable-agent` and waits for /readyz; it returns the seconds from exec
// to /readyz ok.
func (b *bench) startControlPlane(ctx context.Context, log string) (float64, error) {
	if err := b.waitForHost(ctx); err != nil {
		return 0, err
	}
	os.Remove(b.kubeconfig)
	b.client = nil
	t0 := time.Now()
	cp, err := b.start("control plane", b.cpBin, log, "server", "--disable-agent", "--data-dir", b.cpData,
		"--https-listen-port", strconv.Itoa(b.port), "--write-kubeconfig", b.kubeconfig, "--config", "")
	if err != nil {
		return 0, err
	}
	b.cp = cp
	for {
		if !cp.running() {
			return 0, cp.failed("control plane exited")
		}
		if time.Since(t0) > readyTimeout {
			return 0, cp.failed("control plane not ready after %ds", int(readyTimeout.Seconds()))
		}
		if b.loadClient() && b.readyz(ctx) {
			elapsed := secs(t0)
			logf("control plane %d: /readyz after %ss", cp.pid(), num(elapsed))
			return elapsed, nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// startTimes are the seconds from a node's exec to each stage of its
// start; nil where not measured or not seen.
type startTimes struct {
	// readyz: /readyz ok (nil for an agent).
	readyz *float64
	// nodeReady: a Ready condition True with a fresh heartbeat.
	nodeReady *float64
	// clusterReady: the server logs "cluster ready", the agent "node ...
	// joined ... and is running": every component, flannel and kube-proxy
	// included, runs (nil if not seen within 60 s of Ready).
	clusterReady *float64
	// coreDNS, ingress: a CoreDNS pod and an ingress pod Ready (see
	// addonReady); a cold start fails without them within 180 s of node
	// Ready, a warm restart records nil.
	coreDNS, ingress *float64
}

// startAndWait starts the node, a server or (BENCH_ROLE=agent) an agent
// joining the running control plane, and waits for it to be ready; since
// is the zero time for a cold start, and for a warm restart the time the
// node's Ready heartbeat must not be older than. On a warm restart the
// node can be Ready before flannel runs: the CNI configuration of the
// previous start is still on disk.
func (b *bench) startAndWait(ctx context.Context, data, kubelet, log string, since time.Time) (startTimes, error) {
	var st startTimes
	cold := since.IsZero()
	if err := b.waitForHost(ctx); err != nil {
		return st, err
	}
	b.nodeName = ""
	var (
		args    []string
		readyRE *regexp.Regexp
	)
	if b.role == "agent" {
		// The control plane is up and its kubeconfig loaded.
		readyRE = regexp.MustCompile(`msg="node .* joined .* and is running`)
		args = []string{"agent", "--server", "https://127.0.0.1:" + strconv.Itoa(b.port),
			"--token-file", layout.New(b.cpData).Server.TokenFile}
	} else {
		readyRE = regexp.MustCompile(`msg="cluster ready`)
		os.Remove(b.kubeconfig)
		b.client = nil
		args = []string{"server", "--https-listen-port", strconv.Itoa(b.port), "--write-kubeconfig", b.kubeconfig}
	}
	args = append(args, "--data-dir", data, "--config", "", "--kubelet-arg=root-dir="+kubelet)
	t0 := time.Now()
	n, err := b.start(b.role, b.bin, log, args...)
	if err != nil {
		return st, err
	}
	b.node = n
	scan := &logScanner{path: log, offset: int64(n.start), re: readyRE}
	readyzDone := b.role == "agent"
	var readyAt time.Time
	clusterDone, dnsDone, ingressDone := false, false, false
	for {
		if !n.running() {
			return st, n.failed("%s exited", b.role)
		}
		if st.nodeReady == nil && time.Since(t0) > readyTimeout {
			return st, n.failed("node not Ready after %ds", int(readyTimeout.Seconds()))
		}
		if !clusterDone && scan.found() {
			st.clusterReady, clusterDone = ptr(secs(t0)), true
		}
		switch {
		case !b.loadClient():
		case !readyzDone:
			if b.readyz(ctx) {
				st.readyz, readyzDone = ptr(secs(t0)), true
			}
		case st.nodeReady == nil:
			if b.nodeReadySince(ctx, since) {
				st.nodeReady, readyAt = ptr(secs(t0)), time.Now()
			}
		default:
			if !dnsDone && b.addonReady(ctx, coreDNS, cold) {
				st.coreDNS, dnsDone = ptr(secs(t0)), true
			}
			if !ingressDone && b.addonReady(ctx, ingress, cold) {
				st.ingress, ingressDone = ptr(secs(t0)), true
			}
		}
		if st.nodeReady != nil {
			sinceReady := time.Since(readyAt)
			if !clusterDone && sinceReady > 60*time.Second {
				logf("no %q in %s within 60s of node Ready", readyRE, log)
				clusterDone = true
			}
			if (!dnsDone || !ingressDone) && sinceReady > addonsTimeout {
				if cold {
					logf("CoreDNS Ready: %s, ingress Ready: %s, %ds after node Ready; the addons' pods:",
						orNo(st.coreDNS), orNo(st.ingress), int(addonsTimeout.Seconds()))
					b.describePods("kube-system", "")
					return st, shownError{"the addons' pods are not Ready"}
				}
				logf("no readiness probe of CoreDNS (%s) or the ingress (%s) passed within %ds of node Ready",
					orNone(st.coreDNS), orNone(st.ingress), int(addonsTimeout.Seconds()))
				dnsDone, ingressDone = true, true
			}
			if clusterDone && dnsDone && ingressDone {
				break
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return st, err
		}
	}
	logf("%s %d: /readyz after %ss, node Ready after %ss, cluster ready logged after %ss, CoreDNS Ready after %ss, ingress Ready after %ss",
		b.role, n.pid(), orNull(st.readyz), orNull(st.nodeReady), orNull(st.clusterReady), orNull(st.coreDNS), orNull(st.ingress))
	return st, nil
}

func orNull(v *float64) string {
	if v == nil {
		return "null"
	}
	return num(*v)
}

func orNo(v *float64) string {
	if v == nil {
		return "no"
	}
	return num(*v)
}

func orNone(v *float64) string {
	if v == nil {
		return "none"
	}
	return num(*v)
}

// logScanner finds the first line matching re appended to a log from an
// offset on, reading each byte once.
type logScanner struct {
	path   string
	offset int64
	carry  []byte // the last, unfinished line read
	re     *regexp.Regexp
}

func (l *logScanner) found() bool {
	f, err := os.Open(l.path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(l.offset, io.SeekStart); err != nil {
		return false
	}
	data, _ := io.ReadAll(f)
	l.offset += int64(len(data))
	buf := append(l.carry, data...)
	if l.re.Match(buf) {
		return true
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	}
	l.carry = append([]byte(nil), buf...)
	return false
}

// --- the benchmark's pods --------------------------------------------------------

func deployment(replicas int) *appsv1.Deployment {
	r := int32(replicas)
	grace := int64(1)
	labels := map[string]string{"app": deploy}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: deploy, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &r,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name: "pause", Image: image, ImagePullPolicy: corev1.PullNever,
					}},
				},
			},
		},
	}
}

// podPhases is "Running" etc. (Terminating for a pod being deleted), one
// per pod of the benchmark's Deployment.
func (b *bench) podPhases(ctx context.Context) ([]string, error) {
	pods, err := b.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + deploy})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			out = append(out, "Terminating")
		} else {
			out = append(out, string(p.Status.Phase))
		}
	}
	return out, nil
}

func (b *bench) describePods(ns, selector string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := b.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	for _, p := range pods.Items {
		var conds []string
		for _, c := range p.Status.Conditions {
			conds = append(conds, fmt.Sprintf("%s=%s", c.Type, c.Status))
		}
		fmt.Fprintf(os.Stderr, "%s %s %s %s\n", p.Name, p.Status.Phase, p.Spec.NodeName, strings.Join(conds, " "))
	}
}

// runPods creates the Deployment and waits for all its pods Running.
func (b *bench) runPods(ctx context.Context, res *Run) error {
	b.shimsBase = len(b.shimPIDs())
	t0 := time.Now()
	if _, err := b.client.AppsV1().Deployments("default").Create(ctx, deployment(b.pods), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the Deployment %s: %w", deploy, err)
	}
	for {
		phases, _ := b.podPhases(ctx)
		running := 0
		for _, p := range phases {
			if p == "Running" {
				running++
			}
		}
		if running > 0 && res.FirstPodRunningS == nil {
			res.FirstPodRunningS = ptr(secs(t0))
		}
		if running >= b.pods {
			res.PodsRunningS = ptr(secs(t0))
			break
		}
		if time.Since(t0) > podsTimeout {
			msg := fmt.Sprintf("only %d of %d pods Running after %ds", running, b.pods, int(podsTimeout.Seconds()))
			logf("%s", msg)
			b.describePods("default", "")
			return shownError{msg}
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	res.PodsPerS = ptr(round(float64(b.pods)/(*res.PodsRunningS), 2))
	logf("%d pods Running after %ss (first after %ss)", b.pods, num(*res.PodsRunningS), num(*res.FirstPodRunningS))
	return nil
}

func (b *bench) deleteDeployment(ctx context.Context) error {
	background := metav1.DeletePropagationBackground
	err := b.client.AppsV1().Deployments("default").Delete(ctx, deploy, metav1.DeleteOptions{PropagationPolicy: &background})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// podsGone says whether the Deployment's pods and their shims are gone
// (the addons' shims stay).
func (b *bench) podsGone(ctx context.Context) (pods, shims int, gone bool) {
	phases, err := b.podPhases(ctx)
	pods = len(phases)
	if err != nil {
		pods = 1
	}
	shims = len(b.shimPIDs())
	return pods, shims, pods == 0 && shims <= b.shimsBase
}

// deletePods deletes the Deployment and waits until its pods and their
// shims are gone.
func (b *bench) deletePods(ctx context.Context, res *Run) error {
	t0 := time.Now()
	if err := b.deleteDeployment(ctx); err != nil {
		return fmt.Errorf("delete the Deployment %s: %w", deploy, err)
	}
	for {
		pods, shims, gone := b.podsGone(ctx)
		if gone {
			res.DeleteS = ptr(secs(t0))
			break
		}
		if time.Since(t0) > podsTimeout {
			return fmt.Errorf("%d pods and %d shims left %ds after the delete", pods, shims, int(podsTimeout.Seconds()))
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	logf("pods and shims gone %ss after the delete", num(*res.DeleteS))
	return nil
}

// --- host state ----------------------------------------------------------------

// teardownNode removes what the stopped node left: its processes (the
// shims and the containers under them), mounts under the work dir, and,
// when no other node runs, the node-wide state (nodetest.CleanupScope):
// mounts under /run/skiff, new cni-* network namespaces, cni0 with its
// veths, flannel.1, the rules of kube-proxy, flannel and the CNI plugins,
// the pods' CNI state and /run/skiff.
func (b *bench) teardownNode() {
	if b.work == "" {
		return
	}
	// Everything running from the work dir (the shims, a containerd its
	// node left) and the processes under it: the containers go with their
	// shims, which would leave them to init.
	ours := func(p nodetest.Proc) bool { return nodetest.Under(p.Exe, b.work) }
	for _, p := range nodetest.KillAll(func() []nodetest.Proc { return nodetest.Procs(ours) }) {
		logf("process %d (%s) survived SIGKILL", p.PID, p.Cmdline())
	}
	if left := nodetest.UnmountUnder([]string{b.work}); len(left) > 0 {
		logf("still mounted after cleanup: %s", strings.Join(left, " "))
	}
	if !b.started {
		return
	}
	if len(b.foreignNodes()) > 0 {
		logf("another node runs now: leaving %s, cni0, flannel.1 and the iptables rules alone", layout.RunDir)
		return
	}
	scope := nodetest.Scope{Roots: []string{b.work}, PodUIDs: map[string]bool{}, Netns: b.before.NewNetns()}
	for _, k := range b.kubelets {
		for uid := range nodetest.PodUIDsIn(k) {
			scope.PodUIDs[uid] = true
		}
	}
	for _, d := range b.dataDirs {
		scope.HelperBins = append(scope.HelperBins, nodetest.HelperBins(d)...)
	}
	nodetest.CleanupScope(logger{}, scope, b.before.Existed)
}

// cleanup stops what still runs, tears the node down and removes the work
// dir; it runs however the program ends.
func (b *bench) cleanup(failed bool) {
	if b.node != nil && b.node.running() {
		logf("cleanup: deleting the benchmark's pods, stopping %s %d", b.role, b.node.pid())
		if b.client != nil && (b.role == "server" || b.cp != nil) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if b.deleteDeployment(ctx) == nil {
				for i := 0; i < 300; i++ {
					if _, _, gone := b.podsGone(ctx); gone {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			cancel()
		}
		b.stopNode()
	}
	if b.cp != nil && b.cp.running() {
		b.stopControlPlane()
	}
	b.teardownNode()
	if b.started && len(b.foreignNodes()) == 0 {
		if !b.before.Existed["/var/lib/cni"] {
			os.RemoveAll("/var/lib/cni")
		}
		kubeletDir := layout.DefaultKubeletRootDir
		if _, err := os.Stat(kubeletDir); err == nil && !b.before.Existed[kubeletDir] {
			// The kubelet's device-plugin socket dir is fixed upstream.
			logf("removing %s, created by the node (device-plugins/kubelet.sock)", kubeletDir)
			os.RemoveAll(kubeletDir)
		}
	}
	if b.work != "" {
		var left []string
		for _, p := range nodetest.ListProcs() {
			if nodetest.Under(p.Exe, b.work) && p.State != 'Z' {
				left = append(left, fmt.Sprintf("%d %s", p.PID, p.Exe))
			}
		}
		if len(left) > 0 {
			logf("processes still running from %s: %s", b.work, strings.Join(left, ", "))
		}
		os.RemoveAll(b.work)
	}
	if failed {
		logf("failed; logs in %s", b.logs)
	}
}

// --- report --------------------------------------------------------------------

func (b *bench) report(runs []Run) error {
	r := &Report{Date: time.Now().UTC().Format("2006-01-02T15:04:05Z"), Runs: runs, Summary: summarize(runs)}
	if out, err := exec.Command(b.bin, "--version").Output(); err == nil {
		r.Version, _, _ = strings.Cut(string(out), "\n")
	}
	r.Host.Cores = runtime.NumCPU()
	r.Host.MemTotalKiB = memTotalKiB()
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Host.Kernel = strings.TrimSpace(string(k))
	}
	r.Params.Role, r.Params.Runs, r.Params.IdleSeconds = b.role, b.runs, b.idle
	r.Params.Pods, r.Params.SettleSeconds, r.Params.WarmRestart = b.pods, b.settle, b.warm
	if fi, err := os.Stat(b.bin); err == nil {
		r.Binary.Bytes = fi.Size()
	}
	r.Binary.DiskKiB = diskKiB(b.bin)
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(b.jsonPath, append(data, '\n'), 0o644); err != nil {
		return err
	}
	printSummary(os.Stdout, r, b.jsonPath, b.logs)
	return nil
}

// --- files ---------------------------------------------------------------------

func copyExecutable(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return copyFile(src, dst, 0o755)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
