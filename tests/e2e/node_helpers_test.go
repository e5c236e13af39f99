package e2e

// Helpers for tests that run a real node (skiff server with its agent):
// the test image, starting a node, waiting on nodes and pods, and the
// cleanup that leaves the host ready for the next node.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/images"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/tests/nodetest"
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

	before := nodetest.SnapshotHost()
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
		Annotations       map[string]string `json:"annotations"`
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
// Killing skiff does not stop a node (see tests/nodetest): the cleanup of a
// test node removes what it left, scoped to its temp dir, its pods and the
// host paths it created.

// cleanupNode stops the node and removes everything it left on the host.
func cleanupNode(t *testing.T, s *server, before nodetest.HostSnapshot) {
	s.kill()
	scope := nodetest.Scope{
		Roots:      []string{filepath.Dir(s.dataDir)},
		PodUIDs:    nodetest.PodUIDsIn(s.kubeletDir()),
		Netns:      before.NewNetns(),
		HelperBins: nodetest.HelperBins(s.dataDir),
	}
	nodetest.CleanupScope(t, scope, before.Existed)

	if !before.Existed[layout.DefaultKubeletRootDir] {
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

// --- preflight -----------------------------------------------------------------

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
func testRootArg(p nodetest.Proc) string {
	for _, a := range p.Argv {
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
	procs := nodetest.ListProcs()
	scope := nodetest.Scope{PodUIDs: map[string]bool{}, AllKubepods: true}
	for _, p := range procs {
		if !p.IsNode() {
			continue
		}
		parent, parentAlive := procs[p.PPID]
		orphan := p.PPID == 1 || !parentAlive
		// skiff's containerd is the child of an agent: judge the agent.
		if !orphan && parent.IsNode() {
			continue
		}
		// A node of a test run that was killed (go test -timeout, ^C)
		// before its cleanups ran lives on with init as its parent.
		if root := testRootArg(p); orphan && root != "" {
			t.Logf("preflight: killing skiff node left by an earlier test run: pid %d (%s)", p.PID, p.Cmdline())
			if !contains(scope.Roots, root) {
				scope.Roots = append(scope.Roots, root)
			}
			continue
		}
		t.Fatalf("another skiff node is running on this host (pid %d: %s); a test node needs the host's %s, cni0 and flannel.1 to itself: stop it first (skiff-killall.sh)", p.PID, p.Cmdline(), runDir)
	}
	// After the leftover nodes are gone: the test network and cgroup
	// roots of multi-node tests (multinode_helpers_test.go).
	defer removeMultiNodeLeftovers(t)

	var stale []string
	if len(scope.Roots) > 0 {
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
	if n := len(nodetest.ScopeProcs(scope)); n > 0 {
		stale = append(stale, fmt.Sprintf("%d shim or container processes", n))
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "cni-") {
			scope.Netns = append(scope.Netns, e.Name())
		}
	}
	if len(scope.Netns) > 0 {
		stale = append(stale, fmt.Sprintf("%d cni network namespaces", len(scope.Netns)))
	}
	// Mounts (kubelet volumes, container rootfs) in earlier tests' temp
	// dirs: with no node running, nothing uses them.
	for _, m := range nodetest.MountPoints() {
		if root := testRoot(m); root != "" && !contains(scope.Roots, root) {
			scope.Roots = append(scope.Roots, root)
			stale = append(stale, "mounts under "+root)
		}
	}
	if len(stale) == 0 {
		return
	}
	t.Logf("preflight: removing what an earlier node left on this host: %s", strings.Join(stale, ", "))
	nodetest.CleanupScope(t, scope, nil)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
