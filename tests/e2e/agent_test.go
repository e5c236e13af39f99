package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/tests/nodetest"
)

// TestAgentNode runs one server with its agent as a single-node cluster and
// uses it as a user does: deployments on local images, services from pods
// and from the host, logs, exec, port-forward, scaling, rollouts, a memory
// limit, images dropped in while running, a restart of skiff under running
// pods, and no image pull at any time. One node serves all sub-tests
// because each start costs about a minute.
func TestAgentNode(t *testing.T) {
	s := newNode(t)
	s.start()
	s.waitReady()
	node := s.waitNodeReady(3 * time.Minute)

	// The pod CIDR may be written just after the node registers.
	eventually(t, time.Minute, func() error {
		nodes, err := s.nodes()
		if err != nil {
			return err
		}
		if len(nodes) != 1 || nodes[0].Spec.PodCIDR == "" {
			return fmt.Errorf("node has no spec.podCIDR yet")
		}
		node = nodes[0]
		return nil
	})
	_, podNet, err := net.ParseCIDR(node.Spec.PodCIDR)
	if err != nil {
		t.Fatalf("node %s spec.podCIDR %q: %v", node.Metadata.Name, node.Spec.PodCIDR, err)
	}
	_, clusterNet, _ := net.ParseCIDR("10.42.0.0/16")
	_, serviceNet, _ := net.ParseCIDR("10.43.0.0/16")
	if !clusterNet.Contains(podNet.IP) {
		t.Fatalf("node pod CIDR %s is outside the cluster CIDR %s", podNet, clusterNet)
	}
	nodeIP := node.internalIP()
	if net.ParseIP(nodeIP) == nil {
		t.Fatalf("node %s has no InternalIP address: %+v", node.Metadata.Name, node.Status.Addresses)
	}
	t.Logf("node %s: InternalIP %s, pod CIDR %s", node.Metadata.Name, nodeIP, podNet)

	// run runs a sub-test with the server's helpers bound to it.
	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		})
	}

	// A first start on a slow disk says what it waits for, with times.
	run("a first start logs its progress", func(t *testing.T) {
		log := s.log()[s.logStart:]
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`unpacked the helper executables into \S+ in [0-9.]+m?s`),
			regexp.MustCompile(`imported system image \S+ in [0-9.]+m?s`),
			regexp.MustCompile(`kube-apiserver is running \(started in [0-9.]+m?s\)`),
		} {
			if !want.MatchString(log) {
				t.Errorf("the log of a first start has no line like %q", want)
			}
		}
	})

	if !run("images in the images dir are imported at start", func(t *testing.T) {
		s.waitNodeImage(webImageV1, 2*time.Minute)
		s.waitNodeImage(webImageV2, 2*time.Minute)
	}) {
		t.FailNow()
	}

	var webPods []podInfo
	if !run("deployment runs on a local image", func(t *testing.T) {
		s.kubectl("create", "deployment", "web", "--image="+webImageV1, "--replicas=3", "--port=8080")
		webPods = s.waitPodsRunning("app=web", 3)
		for _, p := range webPods {
			checkPodIP(t, p, podNet)
			if p.Spec.NodeName != node.Metadata.Name {
				t.Errorf("pod %s runs on %q, want %s", p.Metadata.Name, p.Spec.NodeName, node.Metadata.Name)
			}
			if got := p.Spec.Containers[0].ImagePullPolicy; got != "IfNotPresent" {
				t.Errorf("pod %s: imagePullPolicy %s, want IfNotPresent", p.Metadata.Name, got)
			}
		}
	}) {
		t.FailNow()
	}
	web := webPods[0]

	var clusterIP string
	run("cluster IP answers from the host and from a pod", func(t *testing.T) {
		s.kubectl("expose", "deployment", "web", "--port", "80", "--target-port", "8080")
		clusterIP = strings.TrimSpace(s.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"))
		if ip := net.ParseIP(clusterIP); ip == nil || !serviceNet.Contains(ip) {
			t.Fatalf("service web has cluster IP %q, want one in %s", clusterIP, serviceNet)
		}
		eventually(t, time.Minute, func() error {
			body, _, err := hostGet(webURL(clusterIP, 80, "/from-host"))
			if err != nil {
				return err
			}
			if !strings.HasPrefix(body, "hostname=web-") || !strings.Contains(body, "path=/from-host") {
				return fmt.Errorf("unexpected answer %q", body)
			}
			return nil
		})

		// DNS is not part of the node yet: the client uses the address.
		s.kubectl("run", "client", "--image="+webImageV1, "--restart=Never", "--command", "--", webBinary, "sleep", "infinity")
		client := s.waitPod("default", "client", 2*time.Minute, podInfo.running)
		checkPodIP(t, client, podNet)
		eventually(t, time.Minute, func() error {
			out, err := s.kubectlErr("exec", "client", "--", webBinary, "get", webURL(clusterIP, 80, "/from-pod"))
			if err != nil {
				return err
			}
			if !strings.HasPrefix(out, "hostname=web-") || !strings.Contains(out, "path=/from-pod") {
				return fmt.Errorf("unexpected answer %q", out)
			}
			return nil
		})
		// Pod to pod, directly.
		out := s.kubectl("exec", "client", "--", webBinary, "get", webURL(web.Status.PodIP, webPort, "/pod-to-pod"))
		if want := "hostname=" + web.Metadata.Name + " path=/pod-to-pod\n"; out != want {
			t.Errorf("pod to pod: got %q, want %q", out, want)
		}
		// Several requests through the service: log which pods answered.
		urls := make([]string, 9)
		for i := range urls {
			urls[i] = webURL(clusterIP, 80, "/spread")
		}
		out = s.kubectl(append([]string{"exec", "client", "--", webBinary, "get"}, urls...)...)
		t.Logf("9 requests to the cluster IP were answered by: %v", answeringHosts(out))
	})

	run("a cluster IP's undefined port and an unused cluster IP are stopped on the node", func(t *testing.T) {
		if clusterIP == "" {
			t.Skip("no service")
		}
		// Without the guard these leave the node by its default route,
		// where a network may answer them (pkg/agent/clusterips).
		last := lastAddress(serviceNet)
		for _, addr := range []string{net.JoinHostPort(clusterIP, "81"), net.JoinHostPort(last, "80")} {
			eventually(t, 30*time.Second, func() error {
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err == nil {
					c.Close()
					return fmt.Errorf("a connection to %s from the host was answered", addr)
				}
				if !errors.Is(err, syscall.ECONNREFUSED) {
					return fmt.Errorf("a connection to %s from the host failed with %v, want it refused", addr, err)
				}
				return nil
			})
		}
		// A pod's connection is dropped: it goes unanswered (the client's
		// 5 s timeout).
		out, err := s.kubectlErr("exec", "client", "--", webBinary, "get", webURL(clusterIP, 81, "/undefined-port"))
		if err == nil {
			t.Errorf("from a pod, the cluster IP's undefined port answered: %q", out)
		}
	})

	run("node port answers from the host", func(t *testing.T) {
		s.kubectl("expose", "deployment", "web", "--name", "web-nodeport", "--type", "NodePort", "--port", "80", "--target-port", "8080")
		port, err := strconv.Atoi(strings.TrimSpace(s.kubectl("get", "service", "web-nodeport", "-o", "jsonpath={.spec.ports[0].nodePort}")))
		if err != nil || port == 0 {
			t.Fatalf("service web-nodeport has no node port: %v", err)
		}
		eventually(t, time.Minute, func() error {
			body, _, err := hostGet(webURL(nodeIP, port, "/via-nodeport"))
			if err != nil {
				return err
			}
			if !strings.HasPrefix(body, "hostname=web-") {
				return fmt.Errorf("unexpected answer %q", body)
			}
			return nil
		})
	})

	run("logs show the requests", func(t *testing.T) {
		path := fmt.Sprintf("/log-check-%d", time.Now().UnixNano())
		body, _, err := hostGet(webURL(web.Status.PodIP, webPort, path))
		if err != nil {
			t.Fatalf("GET from the host to pod %s: %v", web.Metadata.Name, err)
		}
		if want := "hostname=" + web.Metadata.Name + " path=" + path + "\n"; body != want {
			t.Errorf("pod answered %q, want %q", body, want)
		}
		eventually(t, 30*time.Second, func() error {
			out, err := s.kubectlErr("logs", web.Metadata.Name)
			if err != nil {
				return err
			}
			if !strings.Contains(out, "request GET "+path+" ") {
				return fmt.Errorf("kubectl logs %s does not show %s:\n%s", web.Metadata.Name, path, tail(out, 2000))
			}
			return nil
		})
	})

	run("exec runs commands in a container", func(t *testing.T) {
		if out := s.kubectl("exec", web.Metadata.Name, "--", webBinary, "echo", "hi"); out != "hi\n" {
			t.Errorf("kubectl exec echo hi printed %q", out)
		}
		// The command's exit status reaches kubectl.
		_, err := s.kubectlErr("exec", web.Metadata.Name, "--", webBinary, "get", "http://127.0.0.1:1/")
		if err == nil || !strings.Contains(err.Error(), "exit code 1") {
			t.Errorf("a failing command in kubectl exec: %v, want exit code 1", err)
		}
	})

	// Logs and exec above went through the kubelet's serving certificate,
	// which the apiserver verifies: it must come from the kubelet-serving
	// CA, which pods do not trust.
	run("the kubelet serves a certificate from the kubelet-serving CA", func(t *testing.T) {
		tlsDir := s.paths().Server.TLSDir
		kubeletCA := readPEMCert(t, filepath.Join(tlsDir, "kubelet-serving-ca.crt"))
		serverCA := readPEMCert(t, filepath.Join(tlsDir, "server-ca.crt"))
		conn, err := tls.Dial("tcp", net.JoinHostPort(nodeIP, "10250"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS to the kubelet: %v", err)
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(kubeletCA), DNSName: node.Metadata.Name}); err != nil {
			t.Errorf("the kubelet's certificate does not verify against the kubelet-serving CA for its node name: %v", err)
		}
		if err := leaf.VerifyHostname(nodeIP); err != nil {
			t.Errorf("the kubelet's certificate does not name its InternalIP: %v", err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(serverCA)}); err == nil {
			t.Error("the kubelet's certificate verifies against the server CA, which pods trust")
		}
	})

	run("ctr and crictl see the node's containers", func(t *testing.T) {
		env := []string{"SKIFF_DATA_DIR=" + s.dataDir}
		out := runTool(t, env, "crictl", "ps", "--name", "web", "-q")
		if len(strings.Fields(out)) < 3 {
			t.Errorf("skiff crictl ps --name web listed %q, want the 3 web containers", out)
		}
		if out := runTool(t, env, "crictl", "images"); !strings.Contains(out, "skiff.local/system/pause") {
			t.Errorf("skiff crictl images does not list the pause image:\n%s", out)
		}
		if out := runTool(t, env, "ctr", "images", "ls", "-q"); !strings.Contains(out, webImageV1) {
			t.Errorf("skiff ctr images ls (namespace k8s.io) does not list %s:\n%s", webImageV1, out)
		}
	})

	run("port-forward reaches the pod", func(t *testing.T) {
		local := s.portForward("pod/"+web.Metadata.Name, webPort)
		eventually(t, time.Minute, func() error {
			body, _, err := hostGet(webURL("127.0.0.1", local, "/forwarded"))
			if err != nil {
				return err
			}
			if want := "hostname=" + web.Metadata.Name + " path=/forwarded\n"; body != want {
				return fmt.Errorf("answer %q, want %q", body, want)
			}
			return nil
		})
	})

	run("scale up and down", func(t *testing.T) {
		s.kubectl("scale", "deployment", "web", "--replicas=5")
		pods := s.waitPodsRunning("app=web", 5)
		seen := map[string]string{}
		for _, p := range pods {
			checkPodIP(t, p, podNet)
			if other, dup := seen[p.Status.PodIP]; dup {
				t.Errorf("pods %s and %s share the IP %s", other, p.Metadata.Name, p.Status.PodIP)
			}
			seen[p.Status.PodIP] = p.Metadata.Name
		}
		s.kubectl("scale", "deployment", "web", "--replicas=1")
		s.waitPodsRunning("app=web", 1)
	})

	run("set image, rollout and undo", func(t *testing.T) {
		rolloutStatus := func() {
			t.Helper()
			if out, err := s.kubectlRun(4*time.Minute, "", "rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		checkRunning := func(image, version string) {
			t.Helper()
			pods := s.waitPodsRunning("app=web", 1)
			if got := pods[0].Spec.Containers[0].Image; got != image {
				t.Fatalf("pod %s runs image %s, want %s", pods[0].Metadata.Name, got, image)
			}
			_, got, err := hostGet(webURL(pods[0].Status.PodIP, webPort, "/version"))
			if err != nil {
				t.Fatal(err)
			}
			if got != version {
				t.Errorf("pod %s answers as version %q, want %q", pods[0].Metadata.Name, got, version)
			}
		}

		s.kubectl("set", "image", "deployment/web", "web="+webImageV2)
		rolloutStatus()
		checkRunning(webImageV2, "v2")

		s.kubectl("rollout", "undo", "deployment/web")
		rolloutStatus()
		if got := strings.TrimSpace(s.kubectl("get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")); got != webImageV1 {
			t.Fatalf("after rollout undo the deployment's image is %s, want %s", got, webImageV1)
		}
		checkRunning(webImageV1, "v1")
	})

	run("memory limit kills the container", func(t *testing.T) {
		s.apply(`apiVersion: v1
kind: Pod
metadata:
  name: oom
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: alloc
    image: ` + webImageV1 + `
    imagePullPolicy: IfNotPresent
    args: ["alloc"]
    resources:
      limits:
        memory: 32Mi
`)
		p := s.waitPod("default", "oom", 2*time.Minute, func(p podInfo) error {
			if terminated(p) == nil {
				return fmt.Errorf("pod oom is %s, container not terminated yet%s", p.Status.Phase, p.waitingReasons())
			}
			return nil
		})
		term := terminated(p)
		if term.Reason != "OOMKilled" {
			t.Fatalf("container of pod oom terminated with reason %q and exit code %d, want OOMKilled", term.Reason, term.ExitCode)
		}
		t.Logf("pod oom: OOMKilled, exit code %d, phase %s", term.ExitCode, p.Status.Phase)
	})

	run("images dropped in while running are imported and a broken one skipped", func(t *testing.T) {
		garbage := []byte(strings.Repeat("this is not an OCI image archive\n", 1000))
		s.dropFile("broken.tar", garbage)
		v3, err := os.ReadFile(testImageTarball(t, webImageV3))
		if err != nil {
			t.Fatal(err)
		}
		s.dropFile("web-v3.tar.gz", v3)

		eventually(t, 2*time.Minute, func() error {
			s.alive()
			for _, line := range strings.Split(s.log()[s.logStart:], "\n") {
				if strings.Contains(line, "broken.tar") {
					t.Logf("log: %s", line)
					return nil
				}
			}
			return fmt.Errorf("the server log does not mention broken.tar")
		})
		s.waitNodeImage(webImageV3, 2*time.Minute)
		s.kubectl("run", "web-v3", "--image="+webImageV3, "--restart=Never")
		p := s.waitPod("default", "web-v3", 2*time.Minute, podInfo.running)
		if _, version, err := hostGet(webURL(p.Status.PodIP, webPort, "/")); err != nil || version != "v3" {
			t.Errorf("pod web-v3 answered version %q, %v; want v3", version, err)
		}
		s.waitNodeReady(time.Minute) // still Ready
	})

	// The kubelet reads this drop-in at the restart below.
	dropIn := filepath.Join(s.paths().Agent.KubeletDropInDir, "50-test.conf")
	if err := os.WriteFile(dropIn, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 111\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	run("pods survive a restart of skiff", func(t *testing.T) {
		s.kubectl("scale", "deployment", "web", "--replicas=3")
		pods := s.waitPodsRunning("app=web", 3)
		target := pods[0]

		before := runningContainers(t, s)
		t.Logf("running containers before the restart: %v", before)

		// Requests from the host go straight to one pod's IP: through
		// cni0 and the pod's veth, served by the container, whose shim is
		// a separate process. Nothing of skiff's is on that path, so while
		// skiff stops and is down not a single request may fail. When
		// skiff comes back, flannel, the CNI plugins and kube-proxy
		// reconcile the host's links, routes and rules; that must not
		// disturb a running pod either, but allow up to maxFailures failed
		// requests for a short re-sync glitch. A pod that was restarted or
		// lost its network fails far more (requests run every 250ms for
		// more than a minute) and fails the container ID check below.
		const maxFailures = 3
		const (
			phaseBefore = iota
			phaseDown
			phaseRestarting
			phaseAfter
		)
		phaseNames := []string{"before the stop", "while skiff stopped and was down", "while skiff restarted", "after the restart"}
		var phase atomic.Int32
		type result struct {
			phase int32
			err   error
		}
		var (
			mu      sync.Mutex
			results []result
			stop    = make(chan struct{})
			done    = make(chan struct{})
		)
		url := webURL(target.Status.PodIP, webPort, "/during-restart")
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				ph := phase.Load()
				body, _, err := hostGet(url)
				if err == nil && !strings.HasPrefix(body, "hostname="+target.Metadata.Name+" ") {
					err = fmt.Errorf("answer %q is not from pod %s", body, target.Metadata.Name)
				}
				mu.Lock()
				results = append(results, result{ph, err})
				mu.Unlock()
				time.Sleep(250 * time.Millisecond)
			}
		}()
		stopProbe := func() {
			select {
			case <-stop:
			default:
				close(stop)
				<-done
			}
		}
		defer stopProbe()
		eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(results) == 0 || results[len(results)-1].err != nil {
				return fmt.Errorf("pod %s does not answer from the host yet", target.Metadata.Name)
			}
			return nil
		})

		phase.Store(phaseDown)
		s.stop()
		time.Sleep(10 * time.Second) // pods keep serving with skiff down
		phase.Store(phaseRestarting)
		restartedAt := time.Now()
		s.start()
		s.waitReady()
		s.waitKubeletSince(node.Metadata.Name, restartedAt, 3*time.Minute)
		s.waitNodeReady(3 * time.Minute)
		phase.Store(phaseAfter)

		// The kubelet's first pod syncs after a restart are where it would
		// kill or recreate containers: watch for 30s.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			after := runningContainers(t, s)
			for pod, ids := range before {
				if after[pod] != ids {
					t.Fatalf("pod %s: containers (id:restarts) were %s before the restart, now %q", pod, ids, after[pod])
				}
			}
			time.Sleep(3 * time.Second)
		}
		stopProbe()

		mu.Lock()
		defer mu.Unlock()
		ok := make([]int, len(phaseNames))
		failed := make([]int, len(phaseNames))
		var restartFailures []string
		for _, r := range results {
			if r.err == nil {
				ok[r.phase]++
				continue
			}
			failed[r.phase]++
			if r.phase != phaseBefore {
				restartFailures = append(restartFailures, fmt.Sprintf("%s: %v", phaseNames[r.phase], r.err))
			}
		}
		for i, name := range phaseNames {
			t.Logf("requests to pod %s %s: %d answered, %d failed", target.Metadata.Name, name, ok[i], failed[i])
		}
		if ok[phaseDown] == 0 {
			t.Errorf("no request answered while skiff was down")
		}
		if failed[phaseDown] > 0 {
			t.Errorf("%d requests to a running pod failed while skiff was down: %v", failed[phaseDown], restartFailures)
		}
		if n := failed[phaseRestarting] + failed[phaseAfter]; n > maxFailures {
			t.Errorf("%d requests to a running pod failed while skiff restarted (at most %d allowed): %v", n, maxFailures, restartFailures)
		}
		for i := max(0, len(results)-5); i < len(results); i++ {
			if r := results[i]; r.err != nil || r.phase != phaseAfter {
				t.Errorf("the last requests after the restart did not all succeed: %s: %v", phaseNames[r.phase], r.err)
				break
			}
		}
	})

	run("a kubelet configuration drop-in is merged over skiff's", func(t *testing.T) {
		out := s.kubectl("get", "--raw", "/api/v1/nodes/"+node.Metadata.Name+"/proxy/configz")
		if !strings.Contains(out, `"maxPods":111`) {
			t.Errorf("the kubelet's /configz does not show the drop-in's maxPods 111:\n%s", tail(out, 1500))
		}
		eventually(t, time.Minute, func() error {
			if pods := s.kubectl("get", "node", node.Metadata.Name, "-o", "jsonpath={.status.capacity.pods}"); pods != "111" {
				return fmt.Errorf("node capacity pods = %q, want the drop-in's 111", pods)
			}
			return nil
		})
	})

	run("services and new pods work after the restart", func(t *testing.T) {
		if clusterIP != "" {
			eventually(t, time.Minute, func() error {
				_, _, err := hostGet(webURL(clusterIP, 80, "/after-restart"))
				return err
			})
		}
		s.kubectl("scale", "deployment", "web", "--replicas=4")
		for _, p := range s.waitPodsRunning("app=web", 4) {
			checkPodIP(t, p, podNet)
		}
	})

	// kill -9 of skiff's containerd: skiff starts it again, the pods live
	// on in their shims, and the kubelet goes on without a restart of skiff.
	run("a killed containerd is started again and the pods keep running", func(t *testing.T) {
		containerdChild := func() int {
			for pid, p := range nodetest.ListProcs() {
				if p.PPID == s.cmd.Process.Pid && len(p.Argv) > 1 && p.Argv[1] == "containerd" && p.State != 'Z' {
					return pid
				}
			}
			return 0
		}
		killed := containerdChild()
		if killed == 0 {
			t.Fatal("no containerd child of skiff found")
		}
		before := containersOn(t, s, node.Metadata.Name)
		if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, func() error {
			s.alive()
			if pid := containerdChild(); pid == 0 || pid == killed {
				return fmt.Errorf("containerd not started again yet (child %d, killed %d)", pid, killed)
			}
			return nil
		})
		if !strings.Contains(s.log(), "starting it again") {
			t.Error("the log does not say containerd is started again")
		}
		s.kubectl("scale", "deployment", "web", "--replicas=5")
		s.waitPodsRunning("app=web", 5)
		s.alive()
		after := containersOn(t, s, node.Metadata.Name)
		for pod, ids := range before {
			if after[pod] != ids {
				t.Errorf("pod %s: containers %s before containerd was killed, %s after", pod, ids, after[pod])
			}
		}
	})

	run("no image was pulled", func(t *testing.T) {
		if out := strings.TrimSpace(s.kubectl("get", "events", "-A", "--field-selector", "reason=Pulling", "-o", "name")); out != "" {
			t.Errorf("the kubelet pulled images (events with reason Pulling):\n%s\n%s", out,
				s.kubectl("get", "events", "-A", "--field-selector", "reason=Pulling"))
		}
		pods, err := s.pods("", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods {
			for _, c := range p.Status.ContainerStatuses {
				if w := c.State.Waiting; w != nil && (strings.Contains(w.Reason, "Pull") || strings.Contains(w.Reason, "Image")) {
					t.Errorf("pod %s/%s: container %s waits: %s %s", p.Metadata.Namespace, p.Metadata.Name, c.Name, w.Reason, w.Message)
				}
			}
		}
		// The system pods (whatever the server deploys) run without a
		// registry too.
		var system []string
		eventually(t, 3*time.Minute, func() error {
			pods, err := s.pods("kube-system", "")
			if err != nil {
				return err
			}
			system = system[:0]
			for _, p := range pods {
				system = append(system, p.Metadata.Name)
				if p.Status.Phase == "Succeeded" {
					continue
				}
				if err := p.running(); err != nil {
					return err
				}
			}
			return nil
		})
		if len(system) == 0 {
			t.Logf("the server deploys no system pods")
		} else {
			t.Logf("system pods running: %v", system)
		}
	})

	// pkg/startpages and pkg/idlegc: once the node is idle, its process
	// gives back its start-up pages and both it and its containerd collect
	// garbage more often (the figures are in docs/benchmarks.md).
	run("an idle node gives back its start-up memory and collects more often", func(t *testing.T) {
		const idle = "garbage collector at GOGC=20: the process is idle"
		eventually(t, 3*time.Minute, func() error {
			log := s.log()[s.logStart:]
			for _, want := range []string{"unmapped the start-up pages of", idle} {
				if !strings.Contains(log, want) {
					return fmt.Errorf("the node's log since its last start has no %q", want)
				}
			}
			b, err := os.ReadFile(s.paths().Agent.ContainerdLog)
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), idle) {
				return fmt.Errorf("containerd's log has no %q", idle)
			}
			return nil
		})
	})

	s.stop()
}

// checkPodIP: the pod has an IP inside the node's pod CIDR.
func checkPodIP(t *testing.T, p podInfo, podNet *net.IPNet) {
	t.Helper()
	ip := net.ParseIP(p.Status.PodIP)
	if ip == nil || !podNet.Contains(ip) {
		t.Errorf("pod %s has IP %q, want one in the node's pod CIDR %s", p.Metadata.Name, p.Status.PodIP, podNet)
	}
}

// terminated is the termination of the pod's first container (current or
// last state), or nil.
func terminated(p podInfo) *terminatedState {
	if len(p.Status.ContainerStatuses) == 0 {
		return nil
	}
	c := p.Status.ContainerStatuses[0]
	if c.State.Terminated != nil {
		return c.State.Terminated
	}
	return c.LastState.Terminated
}

// runningContainers maps each running pod of the default namespace to its
// containers' "id:restartCount" list.
func runningContainers(t *testing.T, s *server) map[string]string {
	t.Helper()
	pods, err := s.pods("default", "")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, p := range pods {
		if p.Status.Phase != "Running" || p.Metadata.DeletionTimestamp != nil {
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

// answeringHosts lists the hostnames in the bodies printed by `web get`.
func answeringHosts(out string) []string {
	count := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if h, ok := strings.CutPrefix(line, "hostname="); ok {
			h, _, _ = strings.Cut(h, " ")
			count[h]++
		}
	}
	var hosts []string
	for h, n := range count {
		hosts = append(hosts, fmt.Sprintf("%s(%d)", h, n))
	}
	sort.Strings(hosts)
	return hosts
}

// runTool runs one of skiff's embedded tools (skiff <tool> args...) and
// returns its output, failing the test on a non-zero exit.
func runTool(t *testing.T, env []string, tool string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, skiffBin, append([]string{tool}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("skiff %s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestAgentRefusesMalformedRegistries checks that a broken registries file
// stops the node at start with a message naming the file.
func TestAgentRefusesMalformedRegistries(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(bad, []byte("mirrors:\n  docker.io:\n    endpoints: [\"https://m.example\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newNode(t, "--registries", bad)
	s.start()
	select {
	case <-s.exited:
	case <-time.After(3 * time.Minute):
		t.Fatal("skiff server kept running with a malformed registries file")
	}
	if code := s.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatal("skiff server exited 0 with a malformed registries file")
	}
	s.cmd = nil
	if log := s.log(); !strings.Contains(log, "registries file "+bad) || !strings.Contains(log, "endpoints") {
		t.Fatalf("the server log does not name the registries file and the bad key:\n%s", tail(log, 20))
	}
}

// TestAgentNftablesProxy runs kube-proxy in nftables mode, chosen with
// --kube-proxy-arg, and checks that a Service answers through it.
func TestAgentNftablesProxy(t *testing.T) {
	s := newNode(t, "--kube-proxy-arg=proxy-mode=nftables")
	s.start()
	s.waitReady()
	s.waitNodeReady(3 * time.Minute)
	s.waitNodeImage(webImageV1, 2*time.Minute)
	s.kubectl("create", "deployment", "web", "--image="+webImageV1, "--port=8080")
	s.waitPodsRunning("app=web", 1)
	s.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
	clusterIP := strings.TrimSpace(s.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"))
	eventually(t, time.Minute, func() error {
		_, _, err := hostGet(webURL(clusterIP, 80, "/nft"))
		return err
	})
	out, err := exec.Command("nft", "list", "table", "ip", "kube-proxy").CombinedOutput()
	if err != nil || !strings.Contains(string(out), clusterIP) {
		t.Fatalf("kube-proxy's nftables table does not hold the service %s: %v\n%s", clusterIP, err, tail(string(out), 20))
	}
}

// lastAddress is the highest address of n but its broadcast one, which
// the apiserver hands out last.
func lastAddress(n *net.IPNet) string {
	ip := make(net.IP, len(n.IP))
	for i := range n.IP {
		ip[i] = n.IP[i] | ^n.Mask[i]
	}
	ip[len(ip)-1]--
	return ip.String()
}
