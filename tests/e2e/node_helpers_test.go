package e2e

// Helpers for tests that run a real node (skiff server with its agent):
// the test image, starting a node, waiting on nodes and pods, and the
// cleanup that leaves the host ready for the next node.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/images"
	"github.com/skiff-io/skiff/pkg/layout"
)

// The test image: tests/testimage at /web, entrypoint ["/web"], command
// ["serve"] (HTTP on 8080). The tags differ in WEB_VERSION (sent back in
// the X-Web-Version header), so each tag is a distinct image.
const (
	webImageV1 = "skiff.test/web:v1"
	webImageV2 = "skiff.test/web:v2"
	webImageV3 = "skiff.test/web:v3"
	webBinary  = "/web"
	webPort    = 8080
)

// runDir is the agent's fixed runtime dir: containerd's socket is
// runDir/containerd/containerd.sock and its state dir is under it.
const runDir = layout.RunDir

// testImageSet holds the image tarballs built once per test process.
type testImageSet struct {
	binary string            // the static test program
	tars   map[string]string // image name -> OCI tarball
}

var (
	testImagesOnce sync.Once
	testImagesVal  testImageSet
	testImagesErr  error
)

// testImages builds tests/testimage once per process and packs it into
// OCI layout tarballs: v1 and v2 as .tar, v3 as .tar.gz.
func testImages(t *testing.T) testImageSet {
	t.Helper()
	testImagesOnce.Do(func() {
		testImagesVal, testImagesErr = buildTestImages()
	})
	if testImagesErr != nil {
		t.Fatalf("building the test image: %v", testImagesErr)
	}
	return testImagesVal
}

// testImageTarball returns the tarball of one test image name.
func testImageTarball(t *testing.T, name string) string {
	t.Helper()
	p, ok := testImages(t).tars[name]
	if !ok {
		t.Fatalf("no test image %s", name)
	}
	return p
}

func buildTestImages() (testImageSet, error) {
	dir, err := os.MkdirTemp("", "skiff-e2e-images-")
	if err != nil {
		return testImageSet{}, err
	}
	atExit = append(atExit, func() { os.RemoveAll(dir) })

	goTool, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goTool = filepath.Join(root, "bin", "go")
		} else {
			goTool = "/usr/local/go/bin/go"
		}
	}
	bin := filepath.Join(dir, "web")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", bin,
		"github.com/skiff-io/skiff/tests/testimage")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return testImageSet{}, fmt.Errorf("go build tests/testimage: %v\n%s", err, out)
	}

	set := testImageSet{binary: bin, tars: map[string]string{}}
	for _, img := range []struct {
		name, version, file string
	}{
		{webImageV1, "v1", "web-v1.tar"},
		{webImageV2, "v2", "web-v2.tar"},
		{webImageV3, "v3", "web-v3.tar.gz"},
	} {
		spec := images.Spec{
			Name:         img.name,
			Files:        []images.File{{Path: webBinary, Mode: 0o755, Source: bin}},
			Entrypoint:   []string{webBinary},
			Cmd:          []string{"serve"},
			Env:          []string{"WEB_VERSION=" + img.version},
			ExposedPorts: []string{strconv.Itoa(webPort) + "/tcp"},
			Labels:       map[string]string{"io.skiff.test": "web"},
		}
		path := filepath.Join(dir, img.file)
		if strings.HasSuffix(img.file, ".gz") {
			err = writeGzipImage(path, spec)
		} else {
			_, err = images.WriteFile(path, spec)
		}
		if err != nil {
			return testImageSet{}, fmt.Errorf("image %s: %w", img.name, err)
		}
		set.tars[img.name] = path
	}
	return set, nil
}

func writeGzipImage(path string, spec images.Spec) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	if _, err := images.Write(zw, spec); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// --- starting a node ---------------------------------------------------------

// newNode prepares (but does not start) a server that runs its agent: the
// kubelet's root dir is <tmp>/kubelet, and the test images are in
// <data-dir>/agent/images before the first start. The cleanup stops the
// node and removes everything it left on the host (processes, mounts,
// links, iptables rules); on failure it first logs the cluster's state and
// containerd's log.
//
// A node needs the host's network namespace, /run/skiff, cni0 and
// flannel.1 to itself, so newNode first checks no other node is running and
// removes what a node of an earlier, interrupted run left behind.
func newNode(t *testing.T, extra ...string) *server {
	t.Helper()
	set := testImages(t)
	preflightNode(t)

	s := newServer(t, extra...)
	args := s.args[:0]
	for _, a := range s.args {
		if a != "--disable-agent" {
			args = append(args, a)
		}
	}
	s.args = append(args, "--kubelet-arg=root-dir="+s.kubeletDir())

	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.imagesDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{webImageV1, webImageV2} {
		copyFile(t, set.tars[name], filepath.Join(s.imagesDir(), filepath.Base(set.tars[name])))
	}

	before := snapshotHost()
	// Cleanups run last-registered first: diagnostics (while the server may
	// still answer), then the node cleanup, then newServer's kill and log.
	t.Cleanup(func() { cleanupNode(t, s, before) })
	t.Cleanup(func() {
		if t.Failed() {
			dumpNodeDiagnostics(t, s)
		}
	})
	return s
}

// kubeletDir is the kubelet's --root-dir of a node made by newNode.
func (s *server) kubeletDir() string { return filepath.Join(filepath.Dir(s.dataDir), "kubelet") }

// imagesDir is where the node imports image tarballs from.
func (s *server) imagesDir() string { return s.paths().Agent.ImagesDir }

// paths is where the node keeps its files, as skiff itself has them.
func (s *server) paths() layout.Layout { return layout.New(s.dataDir) }

// bind points the server's helpers at t (a subtest) until the returned
// function runs: `defer s.bind(t)()`. The helpers call s.t.Fatal, which must
// be the test running in the current goroutine.
func (s *server) bind(t *testing.T) func() {
	old := s.t
	s.t = t
	return func() { s.t = old }
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// dropFile puts content into the node's images dir under name the way a
// user's `mv` does: written beside it under a name the importer ignores,
// then renamed, so the importer never sees a partial file.
func (s *server) dropFile(name string, content []byte) {
	s.t.Helper()
	tmp := filepath.Join(s.imagesDir(), "."+name+".partial")
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.imagesDir(), name)); err != nil {
		s.t.Fatal(err)
	}
}

// --- kubectl, nodes and pods -----------------------------------------------

// kubectlRun runs kubectl with a timeout and optional stdin.
func (s *server) kubectlRun(timeout time.Duration, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, skiffBin, append([]string{"kubectl", "--kubeconfig", s.kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// apply runs `kubectl apply -f -` on manifest.
func (s *server) apply(manifest string) {
	s.t.Helper()
	if _, err := s.kubectlRun(time.Minute, manifest, "apply", "-f", "-"); err != nil {
		s.t.Fatal(err)
	}
}

type nodeInfo struct {
	Metadata struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		PodCIDR  string   `json:"podCIDR"`
		PodCIDRs []string `json:"podCIDRs"`
		Taints   []struct {
			Key    string `json:"key"`
			Effect string `json:"effect"`
		} `json:"taints"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
		Images []struct {
			Names []string `json:"names"`
		} `json:"images"`
	} `json:"status"`
}

func (n nodeInfo) condition(typ string) string {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// internalIP is the node's first InternalIP address.
func (n nodeInfo) internalIP() string {
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" {
			return a.Address
		}
	}
	return ""
}

func (n nodeInfo) hasImage(name string) bool {
	for _, img := range n.Status.Images {
		for _, n := range img.Names {
			if n == name {
				return true
			}
		}
	}
	return false
}

func (s *server) nodes() ([]nodeInfo, error) {
	out, err := s.kubectlRun(30*time.Second, "", "get", "nodes", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []nodeInfo `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("decoding nodes: %v", err)
	}
	return list.Items, nil
}

// alive fails the test at once if the server process has exited.
func (s *server) alive() {
	s.t.Helper()
	if s.exited == nil {
		return
	}
	select {
	case <-s.exited:
		s.t.Fatalf("skiff server exited (%v)", s.cmd.ProcessState)
	default:
	}
}

// waitNodeReady waits for exactly one node to be Ready and returns it.
func (s *server) waitNodeReady(timeout time.Duration) nodeInfo {
	s.t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for {
		s.alive()
		nodes, err := s.nodes()
		switch {
		case err != nil:
			last = err.Error()
		case len(nodes) != 1:
			last = fmt.Sprintf("%d nodes registered, want 1", len(nodes))
		case nodes[0].condition("Ready") != "True":
			last = fmt.Sprintf("node %s: %+v", nodes[0].Metadata.Name, nodes[0].Status.Conditions)
		default:
			return nodes[0]
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no Ready node within %s: %s", timeout, last)
		}
		time.Sleep(2 * time.Second)
	}
}

// waitNodeImage waits until the node reports image name (the kubelet lists
// the runtime's images in the node status, refreshed about every 30s).
func (s *server) waitNodeImage(name string, timeout time.Duration) {
	s.t.Helper()
	eventually(s.t, timeout, func() error {
		s.alive()
		nodes, err := s.nodes()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.hasImage(name) {
				return nil
			}
		}
		return fmt.Errorf("image %s not in the node status", name)
	})
}

// waitKubeletSince waits until the node's lease was renewed after t0, i.e.
// a kubelet started after t0 is running.
func (s *server) waitKubeletSince(node string, t0 time.Time, timeout time.Duration) {
	s.t.Helper()
	eventually(s.t, timeout, func() error {
		s.alive()
		out, err := s.kubectlRun(30*time.Second, "", "-n", "kube-node-lease", "get", "lease", node, "-o", "jsonpath={.spec.renewTime}")
		if err != nil {
			return err
		}
		renewed, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out))
		if err != nil {
			return fmt.Errorf("lease renewTime %q: %v", out, err)
		}
		if !renewed.After(t0) {
			return fmt.Errorf("node lease last renewed at %s, before %s", renewed, t0)
		}
		return nil
	})
}

type podInfo struct {
	Metadata struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		UID               string            `json:"uid"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
		Labels            map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		NodeName   string `json:"nodeName"`
		Containers []struct {
			Name            string `json:"name"`
			Image           string `json:"image"`
			ImagePullPolicy string `json:"imagePullPolicy"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase             string            `json:"phase"`
		Reason            string            `json:"reason"`
		PodIP             string            `json:"podIP"`
		ContainerStatuses []containerStatus `json:"containerStatuses"`
	} `json:"status"`
}

type containerStatus struct {
	Name         string         `json:"name"`
	ContainerID  string         `json:"containerID"`
	Image        string         `json:"image"`
	ImageID      string         `json:"imageID"`
	RestartCount int            `json:"restartCount"`
	Ready        bool           `json:"ready"`
	State        containerState `json:"state"`
	LastState    containerState `json:"lastState"`
}

type containerState struct {
	Running *struct {
		StartedAt string `json:"startedAt"`
	} `json:"running"`
	Waiting *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"waiting"`
	Terminated *terminatedState `json:"terminated"`
}

type terminatedState struct {
	Reason   string `json:"reason"`
	ExitCode int    `json:"exitCode"`
}

// running says why p is not a running, ready pod (nil when it is).
func (p podInfo) running() error {
	if p.Metadata.DeletionTimestamp != nil {
		return fmt.Errorf("pod %s is terminating", p.Metadata.Name)
	}
	if p.Status.Phase != "Running" {
		return fmt.Errorf("pod %s is %s %s%s", p.Metadata.Name, p.Status.Phase, p.Status.Reason, p.waitingReasons())
	}
	if len(p.Status.ContainerStatuses) == 0 {
		return fmt.Errorf("pod %s has no container statuses", p.Metadata.Name)
	}
	for _, c := range p.Status.ContainerStatuses {
		if !c.Ready {
			return fmt.Errorf("pod %s: container %s not ready%s", p.Metadata.Name, c.Name, p.waitingReasons())
		}
	}
	return nil
}

func (p podInfo) waitingReasons() string {
	var b strings.Builder
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			fmt.Fprintf(&b, " (%s waiting: %s %s)", c.Name, w.Reason, w.Message)
		}
	}
	return b.String()
}

// pods lists the pods of namespace ns ("" for all) matching selector ("" for
// all).
func (s *server) pods(ns, selector string) ([]podInfo, error) {
	args := []string{"get", "pods", "-o", "json"}
	if ns == "" {
		args = append(args, "--all-namespaces")
	} else {
		args = append(args, "-n", ns)
	}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	out, err := s.kubectlRun(30*time.Second, "", args...)
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []podInfo `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("decoding pods: %v", err)
	}
	return list.Items, nil
}

// waitPodsRunning waits until exactly n pods in the default namespace match
// selector, all running and ready, none terminating, and returns them
// sorted by name.
func (s *server) waitPodsRunning(selector string, n int) []podInfo {
	s.t.Helper()
	var got []podInfo
	eventually(s.t, 2*time.Minute, func() error {
		s.alive()
		pods, err := s.pods("default", selector)
		if err != nil {
			return err
		}
		if len(pods) != n {
			names := make([]string, 0, len(pods))
			for _, p := range pods {
				names = append(names, p.Metadata.Name+"("+p.Status.Phase+")")
			}
			return fmt.Errorf("%d pods match %q, want %d: %v", len(pods), selector, n, names)
		}
		for _, p := range pods {
			if err := p.running(); err != nil {
				return err
			}
		}
		got = pods
		return nil
	})
	sort.Slice(got, func(i, j int) bool { return got[i].Metadata.Name < got[j].Metadata.Name })
	return got
}

// waitPod waits until check accepts the pod ns/name and returns it.
func (s *server) waitPod(ns, name string, timeout time.Duration, check func(podInfo) error) podInfo {
	s.t.Helper()
	var got podInfo
	eventually(s.t, timeout, func() error {
		s.alive()
		out, err := s.kubectlRun(30*time.Second, "", "-n", ns, "get", "pod", name, "-o", "json")
		if err != nil {
			return err
		}
		var p podInfo
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			return fmt.Errorf("decoding pod: %v", err)
		}
		if err := check(p); err != nil {
			return err
		}
		got = p
		return nil
	})
	return got
}

// --- HTTP from the host --------------------------------------------------------

// hostClient makes every request on a new connection (so each one goes
// through the service rules anew) and ignores proxy settings.
var hostClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// hostGet GETs url from the host and returns the body and the
// X-Web-Version header; a status other than 200 is an error.
func hostGet(url string) (body, version string, err error) {
	resp, err := hostClient.Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", fmt.Errorf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), resp.Header.Get("X-Web-Version"), nil
}

// webURL is the test server at ip:port with path.
func webURL(ip string, port int, path string) string {
	return "http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + path
}

// portForward runs `kubectl port-forward target <local>:<remote>` in the
// background until the test ends and returns the local port.
func (s *server) portForward(target string, remote int) int {
	s.t.Helper()
	local := freePort(s.t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, skiffBin, "kubectl", "--kubeconfig", s.kubeconfig,
		"port-forward", target, fmt.Sprintf("%d:%d", local, remote))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		s.t.Fatal(err)
	}
	t := s.t
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kubectl port-forward output:\n%s", out.String())
		}
	})
	return local
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// --- diagnostics -------------------------------------------------------------

// dumpNodeDiagnostics logs what explains a failed node test: nodes, pods,
// events and the end of containerd's log (the server log follows from
// newServer's cleanup).
func dumpNodeDiagnostics(t *testing.T, s *server) {
	for _, args := range [][]string{
		{"get", "nodes", "-o", "wide"},
		{"describe", "nodes"},
		{"get", "pods", "-A", "-o", "wide"},
		{"describe", "pods", "-A"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
	} {
		out, err := s.kubectlRun(20*time.Second, "", args...)
		if err != nil {
			out += "\n" + err.Error()
		}
		t.Logf("kubectl %s:\n%s", strings.Join(args, " "), tail(out, 30000))
	}
	// The log's tail (dumped next) is often all kubelet chatter: list the
	// errors of the whole log first.
	var errs []string
	for _, line := range strings.Split(s.log(), "\n") {
		if l := strings.ToLower(line); strings.Contains(l, "error") || strings.Contains(l, "fail") || strings.HasPrefix(line, "E") {
			errs = append(errs, line)
		}
	}
	if len(errs) > 150 {
		errs = errs[len(errs)-150:]
	}
	t.Logf("error lines of the server log (last %d):\n%s", len(errs), strings.Join(errs, "\n"))

	p := s.paths().Agent.ContainerdLog
	b, err := os.ReadFile(p)
	if err != nil {
		t.Logf("containerd log: %v", err)
		return
	}
	t.Logf("containerd log (%s):\n%s", p, tail(string(b), 20000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}

// --- cleanup -----------------------------------------------------------------
//
// Killing skiff does not stop a node: by design the containerd shims are
// separate daemons that keep the pods running, the kubelet leaves tmpfs and
// bind mounts under its root dir, containerd leaves rootfs overlays and
// /dev/shm mounts under /run/skiff, and cni0, flannel.1, the pods' network
// namespaces, host-local IP reservations and iptables rules stay in the
// kernel and on disk. skiff-killall.sh (install.sh) undoes most of that, but
// only for the data dir baked in at install time, only for
// /var/lib/kubelet, and it kills the shims but not the container processes
// under them; so the tests do the same work here, scoped to one node's temp
// dir, its pods and the paths it created.

// hostPathsToWatch are shared host paths a node may create; the cleanup
// removes those that did not exist before the node started.
var hostPathsToWatch = []string{runDir, "/run/flannel", "/var/lib/cni", "/etc/cni", "/opt/cni", "/var/lib/kubelet", "/run/netns"}

// hostSnapshot is the host state before a node started.
type hostSnapshot struct {
	existed map[string]bool // hostPathsToWatch entries that existed
	netns   map[string]bool // entries of /run/netns
}

func snapshotHost() hostSnapshot {
	h := hostSnapshot{existed: map[string]bool{}, netns: map[string]bool{}}
	for _, p := range hostPathsToWatch {
		if _, err := os.Lstat(p); err == nil {
			h.existed[p] = true
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		h.netns[e.Name()] = true
	}
	return h
}

// nodeScope says which processes, mounts and state belong to the node(s)
// being cleaned up.
type nodeScope struct {
	roots       []string        // temp dirs of the nodes (data and kubelet dirs)
	podUIDs     map[string]bool // pods the nodes ran
	allKubepods bool            // every process in a kubepods cgroup is theirs
	netns       []string        // /run/netns entries to remove
	helperBins  []string        // dirs with bundled helpers (iptables tools)
}

// cleanupNode stops the node and removes everything it left on the host.
func cleanupNode(t *testing.T, s *server, before hostSnapshot) {
	s.kill()
	root := filepath.Dir(s.dataDir)
	scope := nodeScope{
		roots:   []string{root},
		podUIDs: map[string]bool{},
	}
	entries, _ := os.ReadDir(filepath.Join(s.kubeletDir(), "pods"))
	for _, e := range entries {
		scope.podUIDs[e.Name()] = true
	}
	scope.netns = newNetns(before)
	scope.helperBins, _ = filepath.Glob(filepath.Join(s.paths().HelpersDir, "*", "bin"))
	cleanupScope(t, scope, before.existed)

	if !before.existed["/var/lib/kubelet"] {
		checkKubeletDirUnused(t, s.kubeletDir())
	}
}

// checkKubeletDirUnused fails the test when a node whose kubelet root dir is
// elsewhere wrote to /var/lib/kubelet, then removes the folder. The one
// exception is upstream's: the kubelet's device manager serves its
// registration socket at the fixed path /var/lib/kubelet/device-plugins,
// where device plugins expect it whatever the root dir.
func checkKubeletDirUnused(t *testing.T, rootDir string) {
	t.Helper()
	if _, err := os.Stat("/var/lib/kubelet"); err != nil {
		return
	}
	_ = filepath.WalkDir("/var/lib/kubelet", func(path string, d os.DirEntry, err error) error {
		if err != nil || path == "/var/lib/kubelet" {
			return nil
		}
		if path == "/var/lib/kubelet/device-plugins" {
			return filepath.SkipDir
		}
		t.Errorf("the node wrote %s although its kubelet root dir was %s", path, rootDir)
		return nil
	})
	os.RemoveAll("/var/lib/kubelet")
}

// newNetns lists the cni-* network namespaces created since before.
func newNetns(before hostSnapshot) []string {
	var out []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if !before.netns[e.Name()] && strings.HasPrefix(e.Name(), "cni-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// cleanupScope does the work; existed tells which hostPathsToWatch existed
// before (nil: keep them all, remove only their node-specific content).
func cleanupScope(t *testing.T, scope nodeScope, existed map[string]bool) {
	killScope(t, scope)

	// Container IDs (for the CNI state) before the state dirs go away:
	// containerd's tasks and the container cgroups of the (now empty) pods.
	ids := map[string]bool{}
	taskDir := filepath.Join(runDir, "containerd", "io.containerd.runtime.v2.task", "k8s.io")
	if entries, err := os.ReadDir(taskDir); err == nil {
		for _, e := range entries {
			ids[e.Name()] = true
		}
	}
	podCgroups := findPodCgroups(scope, ids)

	var prefixes []string
	prefixes = append(prefixes, scope.roots...)
	prefixes = append(prefixes, runDir)
	for _, n := range scope.netns {
		prefixes = append(prefixes, filepath.Join("/run/netns", n))
	}
	if existed != nil && !existed["/var/lib/kubelet"] {
		prefixes = append(prefixes, "/var/lib/kubelet")
	}
	if left := unmountUnder(prefixes); len(left) > 0 {
		t.Errorf("mounts left after cleanup: %v", left)
	}
	for _, n := range scope.netns {
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
		t.Logf("cleanup: %d pod cgroups could not be removed (e.g. %s)", len(busy), busy[0])
	}

	deleteNodeLinks(t)
	removeNodeRules(t, scope.helperBins)
	cleanCNIState(t, ids, existed)

	os.RemoveAll(runDir)
	for _, p := range hostPathsToWatch {
		if existed != nil && !existed[p] && p != "/var/lib/kubelet" {
			os.RemoveAll(p)
		}
	}
}

// findPodCgroups returns the cgroup dirs of the scope's pods that hold no
// process any more (the pod dirs and their container dirs, in every
// hierarchy) and adds the container IDs found there to ids.
func findPodCgroups(scope nodeScope, ids map[string]bool) []string {
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
			if !scope.ownsPodCgroup(d.Name()) {
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

// ownsPodCgroup: name is the cgroup of one of the scope's pods
// ("pod<uid>" for the cgroupfs driver, "...-pod<uid_with_underscores>.slice"
// for systemd), or of any pod with allKubepods.
func (sc nodeScope) ownsPodCgroup(name string) bool {
	i := strings.LastIndex(name, "pod")
	if i < 0 {
		return false
	}
	uid := strings.ReplaceAll(strings.TrimSuffix(name[i+3:], ".slice"), "_", "-")
	if !podUID.MatchString(uid) {
		return false
	}
	return sc.allKubepods || sc.podUIDs[uid]
}

// podUID matches the UIDs of API pods (UUIDs) and of static pods (hashes).
var podUID = regexp.MustCompile(`^[0-9a-f][0-9a-f-]{31,35}$`)

type procInfo struct {
	pid, ppid int
	state     byte
	exe       string
	argv      []string
	cgroup    string
}

func (p procInfo) cmdline() string { return strings.Join(p.argv, " ") }

func listProcs() map[int]procInfo {
	procs := map[int]procInfo{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		p := procInfo{pid: pid, state: fields[0][0]}
		p.ppid, _ = strconv.Atoi(fields[1])
		if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
			p.exe = strings.TrimSuffix(exe, " (deleted)")
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
			p.argv = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
			p.cgroup = string(b)
		}
		procs[pid] = p
	}
	return procs
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// isShim: a containerd shim of a skiff node (they connect to runDir).
func (p procInfo) isShim() bool {
	name := filepath.Base(p.exe)
	if len(p.argv) > 0 {
		if a0 := filepath.Base(p.argv[0]); strings.HasPrefix(a0, "containerd-shim") {
			name = a0
		}
	}
	return strings.HasPrefix(name, "containerd-shim") && strings.Contains(p.cmdline(), runDir+"/")
}

// owns says whether the process belongs to the scope, not counting its
// ancestry.
func (sc nodeScope) owns(p procInfo) bool {
	for _, r := range sc.roots {
		if p.exe != "" && under(p.exe, r) {
			return true
		}
		for _, a := range p.argv {
			if strings.Contains(a, r+"/") || strings.HasSuffix(a, r) {
				return true
			}
		}
	}
	if p.exe != "" && under(p.exe, runDir) {
		return true
	}
	if p.isShim() {
		return true
	}
	for _, line := range strings.Split(p.cgroup, "\n") {
		for _, part := range strings.Split(line, "/") {
			if !sc.allKubepods && sc.ownsPodCgroup(part) {
				return true
			}
			// Without a live node, a container whose shim is gone (its
			// parent is init) is a leftover; containers of other
			// Kubernetes distributions still have their shim.
			if sc.allKubepods && strings.HasPrefix(part, "kubepods") && p.ppid == 1 {
				return true
			}
		}
	}
	return false
}

// scopeProcs returns the live processes of the scope and their descendants,
// never this process or its ancestors.
func scopeProcs(sc nodeScope) []procInfo {
	procs := listProcs()
	protected := map[int]bool{1: true}
	for pid := os.Getpid(); pid > 1; {
		protected[pid] = true
		p, ok := procs[pid]
		if !ok {
			break
		}
		pid = p.ppid
	}
	ours := map[int]bool{}
	for pid, p := range procs {
		if sc.owns(p) {
			ours[pid] = true
		}
	}
	// Descendants: repeat until no new process is added.
	for changed := true; changed; {
		changed = false
		for pid, p := range procs {
			if !ours[pid] && ours[p.ppid] {
				ours[pid] = true
				changed = true
			}
		}
	}
	var out []procInfo
	for pid := range ours {
		p := procs[pid]
		if protected[pid] || p.state == 'Z' {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// killScope SIGKILLs the scope's processes until none is left.
func killScope(t *testing.T, sc nodeScope) {
	var left []procInfo
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		left = scopeProcs(sc)
		if len(left) == 0 {
			return
		}
		for _, p := range left {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, p := range left {
		t.Errorf("cleanup: process %d (%s) survived SIGKILL", p.pid, p.cmdline())
	}
}

// mountPoints lists the mount points of this mount namespace.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

// unescapeMount decodes the octal escapes (\040 for space, ...) of
// /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder lazily unmounts every mount at or below the prefixes,
// deepest first, and returns those still mounted afterwards.
func unmountUnder(prefixes []string) []string {
	match := func() []string {
		var ms []string
		for _, m := range mountPoints() {
			for _, p := range prefixes {
				if under(m, p) {
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

// deleteNodeLinks removes cni0 (and the veths on it), flannel.1 and
// flannel-v6.1, as skiff-killall.sh does.
func deleteNodeLinks(t *testing.T) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Logf("cleanup: ip not installed; network links not removed")
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
			t.Errorf("cleanup: ip link delete %s: %v: %s", link, err, out)
		}
	}
}

// lookTool finds a tool on PATH or among the node's bundled helpers.
func lookTool(name string, helperBins []string) string {
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

var nodeRule = regexp.MustCompile(`KUBE-|CNI-|(?i:flannel|skiff)`)

// removeNodeRules drops the iptables rules and chains of kube-proxy,
// flannel, the CNI plugins and skiff (the filter of skiff-killall.sh), and
// the nftables tables of kube-proxy and flannel.
func removeNodeRules(t *testing.T, helperBins []string) {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		save, restore := lookTool(ipt+"-save", helperBins), lookTool(ipt+"-restore", helperBins)
		if save == "" || restore == "" {
			continue
		}
		out, err := exec.Command(save).Output()
		if err != nil || !nodeRule.Match(out) {
			continue
		}
		var kept bytes.Buffer
		for _, line := range strings.SplitAfter(string(out), "\n") {
			if !nodeRule.MatchString(line) {
				kept.WriteString(line)
			}
		}
		cmd := exec.Command(restore)
		cmd.Stdin = &kept
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cleanup: %s: %v: %s", restore, err, b)
		}
	}
	if nft := lookTool("nft", helperBins); nft != "" {
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
					t.Errorf("cleanup: nft delete table %s %s: %v: %s", f[1], f[2], err, b)
				}
			}
		}
	}
}

// cleanCNIState removes the host-local IP reservations and cached CNI
// results of the given containers from /var/lib/cni, or all of it when the
// node created it.
func cleanCNIState(t *testing.T, ids map[string]bool, existed map[string]bool) {
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

// --- preflight -----------------------------------------------------------------

// isAgent: p is a skiff process that runs (part of) a node: an agent, a
// server without --disable-agent, or skiff's containerd.
func (p procInfo) isAgent() bool {
	if filepath.Base(p.exe) != "skiff" || len(p.argv) < 2 || p.state == 'Z' {
		return false
	}
	if filepath.Base(p.argv[0]) == "containerd" {
		return true
	}
	switch p.argv[1] {
	case "containerd", "agent":
		return true
	case "server":
		for _, a := range p.argv[2:] {
			if a == "--disable-agent" || a == "--disable-agent=true" {
				return false
			}
		}
		return true
	}
	return false
}

// testRoot returns the test temp dir (<TMPDIR>/Test<name><n>/<nnn>, as
// made by t.TempDir) that path is in, or "".
func testRoot(path string) string {
	tmp := filepath.Clean(os.TempDir())
	rel, ok := strings.CutPrefix(filepath.Clean(path), tmp+"/")
	if !ok {
		return ""
	}
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) < 2 || !strings.HasPrefix(parts[0], "Test") {
		return ""
	}
	return filepath.Join(tmp, parts[0], parts[1])
}

// testRootArg is the test temp dir a command line refers to, or "".
func (p procInfo) testRootArg() string {
	for _, a := range p.argv {
		if _, v, ok := strings.Cut(a, "="); ok {
			a = v
		}
		if r := testRoot(a); r != "" {
			return r
		}
	}
	return ""
}

// preflightNode fails if another node runs on this host, and otherwise
// removes what nodes of earlier, interrupted test runs left: their orphaned
// servers, shims and containers, mounts, links and rules.
func preflightNode(t *testing.T) {
	t.Helper()
	procs := listProcs()
	scope := nodeScope{podUIDs: map[string]bool{}, allKubepods: true}
	for _, p := range procs {
		if !p.isAgent() {
			continue
		}
		parent, parentAlive := procs[p.ppid]
		orphan := p.ppid == 1 || !parentAlive
		// skiff's containerd is the child of an agent: judge the agent.
		if !orphan && parent.isAgent() {
			continue
		}
		// A node of a test run that was killed (go test -timeout, ^C)
		// before its cleanups ran lives on with init as its parent.
		if root := p.testRootArg(); orphan && root != "" {
			t.Logf("preflight: killing skiff node left by an earlier test run: pid %d (%s)", p.pid, p.cmdline())
			if !contains(scope.roots, root) {
				scope.roots = append(scope.roots, root)
			}
			continue
		}
		t.Fatalf("another skiff node is running on this host (pid %d: %s); a test node needs the host's %s, cni0 and flannel.1 to itself: stop it first (skiff-killall.sh)", p.pid, p.cmdline(), runDir)
	}
	// After the leftover nodes are gone: the test network and cgroup
	// roots of multi-node tests (multinode_helpers_test.go).
	defer removeMultiNodeLeftovers(t)

	var stale []string
	if len(scope.roots) > 0 {
		stale = append(stale, "orphaned skiff servers")
	}
	if _, err := os.Stat(runDir); err == nil {
		stale = append(stale, runDir)
	}
	for _, link := range []string{"cni0", "flannel.1"} {
		if _, err := net.InterfaceByName(link); err == nil {
			stale = append(stale, "link "+link)
		}
	}
	if n := len(scopeProcs(scope)); n > 0 {
		stale = append(stale, fmt.Sprintf("%d shim or container processes", n))
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "cni-") {
			scope.netns = append(scope.netns, e.Name())
		}
	}
	if len(scope.netns) > 0 {
		stale = append(stale, fmt.Sprintf("%d cni network namespaces", len(scope.netns)))
	}
	// Mounts (kubelet volumes, container rootfs) in earlier tests' temp
	// dirs: with no node running, nothing uses them.
	for _, m := range mountPoints() {
		if root := testRoot(m); root != "" && !contains(scope.roots, root) {
			scope.roots = append(scope.roots, root)
			stale = append(stale, "mounts under "+root)
		}
	}
	if len(stale) == 0 {
		return
	}
	t.Logf("preflight: removing what an earlier node left on this host: %s", strings.Join(stale, ", "))
	cleanupScope(t, scope, nil)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
