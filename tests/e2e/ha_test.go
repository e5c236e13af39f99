package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHighAvailability runs three servers on embedded etcd and one agent:
// the first server (--cluster-init) in the host's network namespace, the
// two others and the agent each in their own network and mount
// namespaces on the test bridge. It checks that the servers share one
// cluster, that the cluster survives a kill -9 of the server leading the
// controller-manager (the API answers through the others, the lease moves,
// a Deployment scaled meanwhile converges, nothing acknowledged is lost),
// and that the killed server comes back as a member.
func TestHighAvailability(t *testing.T) {
	preflightNode(t)
	setupTestNetwork(t)
	const agentSecret = "skt-ha-agent-secret"
	s := newNode(t, "--node-ip", bridgeIP, "--flannel-iface", bridgeName, "--cluster-init", "--agent-token", agentSecret)
	t.Cleanup(func() {
		if t.Failed() {
			dumpNetworkDiagnostics(t)
		}
	})
	s.start()
	s.waitReady()
	first := s.waitNodeReady(3 * time.Minute).Metadata.Name

	code, out := runSkiff(t, 30*time.Second, "token", "--config", "", "--data-dir", s.dataDir)
	token := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(token, "K10") {
		t.Fatalf("skiff token: exit %d, printed %d bytes, want a K10 token", code, len(out))
	}

	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		})
	}

	run("an agent-only token does not join a server", func(t *testing.T) {
		agentToken := token[:strings.Index(token, "::")] + "::node:" + agentSecret
		n := newJoiningServer(t, s, "skt-badserver", nodeNets[1].ip, agentToken)
		defer n.bind(t)()
		code, out := n.runToExit(2 * time.Minute)
		if code == 0 || !strings.Contains(out, "agent-only token") {
			t.Fatalf("skiff server joining with an agent-only token: exit %d, want non-zero and the cause named:\n%s", code, tail(out, 2000))
		}
		if _, err := os.Stat(n.paths().Server.TLSDir); err == nil {
			if files, _ := filepath.Glob(filepath.Join(n.paths().Server.TLSDir, "*.key")); len(files) > 0 {
				t.Errorf("a refused server received keys: %v", files)
			}
		}
	})

	// Each server listens on the first one's port: the apiservers share
	// one `kubernetes` Service, whose endpoints have one port.
	joined := []*agentNode{
		newJoiningServer(t, s, "skt-server2", nodeNets[1].ip, token),
		newJoiningServer(t, s, "skt-server3", nodeNets[2].ip, token),
	}
	names := []string{first}
	for _, n := range joined {
		n.start()
		names = append(names, n.name)
		s.waitNodes(names, 5*time.Minute, n.alive)
	}
	prepareAgentCgroups(t, agentCgroupRoot("skt-agent"))
	a := newAgent(t, s, "skt-agent", agentIP, "", token)
	a.start()
	alive := []func(){a.alive}
	for _, n := range joined {
		alive = append(alive, n.alive)
	}
	s.waitNodes(append(names, a.name), 5*time.Minute, alive...)
	t.Cleanup(func() {
		if t.Failed() {
			keepLogs(t, "ha", append([]string{s.logPath, a.logPath}, joined[0].logPath, joined[1].logPath))
		}
	})

	// via[i] reaches the cluster through server i only.
	ips := []string{bridgeIP, joined[0].ip, joined[1].ip}
	via := make([]*server, len(ips))
	for i, ip := range ips {
		via[i] = s.through(t, ip)
	}

	if !run("writes through any server are read through the others", func(t *testing.T) {
		writesReadEverywhere(t, via, ips, "ha-written-via")
	}) {
		t.FailNow()
	}

	run("the cluster survives the loss of the controller-manager's leader", func(t *testing.T) {
		// The Deployment runs on the agent, which must keep working
		// through whichever servers remain.
		s.apply(agentDeployment("ha-web", 1, a.name))
		waitReadyReplicas(t, s, "ha-web", 1, 3*time.Minute)
		const acked = 20
		for i := range acked {
			s.kubectl("create", "configmap", fmt.Sprintf("ha-ack-%d", i), "--from-literal=i="+strconv.Itoa(i))
		}

		host, _ := os.Hostname()
		holder := leaseHolder(t, s, "kube-controller-manager")
		leader := 0
		for i, n := range joined {
			if holder == n.name {
				leader = i + 1
			}
		}
		if leader == 0 && holder != host {
			t.Fatalf("kube-controller-manager's lease is held by %q, none of the servers", holder)
		}
		survivor := via[(leader+1)%len(via)]
		t.Logf("killing server %d (%s), which holds the kube-controller-manager lease; the test goes on through %s", leader, ips[leader], ips[(leader+1)%len(ips)])
		killed := time.Now()
		if leader == 0 {
			s.kill()
		} else {
			joined[leader-1].kill()
		}

		eventually(t, 2*time.Minute, func() error {
			if h := leaseHolder(t, survivor, "kube-controller-manager"); h == holder {
				return fmt.Errorf("the lease is still held by the killed server %s", h)
			}
			return nil
		})
		t.Logf("a new kube-controller-manager leader holds the lease %s after the kill", time.Since(killed).Round(time.Second))

		survivor.kubectl("scale", "deployment", "ha-web", "--replicas=3")
		waitReadyReplicas(t, survivor, "ha-web", 3, 3*time.Minute)
		for i := range acked {
			if got := survivor.kubectl("get", "configmap", fmt.Sprintf("ha-ack-%d", i), "-o", "jsonpath={.data.i}"); got != strconv.Itoa(i) {
				t.Errorf("acknowledged configmap ha-ack-%d reads %q after the kill", i, got)
			}
		}

		if leader == 0 {
			s.start()
			s.waitReady()
		} else {
			joined[leader-1].start()
		}
		wantNodes := append(names, a.name)
		eventually(t, 4*time.Minute, func() error {
			for i, w := range via {
				if out, err := w.kubectlErr("get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
					return fmt.Errorf("server %s not ready: %v", ips[i], err)
				}
			}
			nodes, err := survivor.nodes()
			if err != nil {
				return err
			}
			ready := map[string]bool{}
			for _, n := range nodes {
				ready[n.Metadata.Name] = n.condition("Ready") == "True"
			}
			for _, n := range wantNodes {
				if !ready[n] {
					return fmt.Errorf("node %s is not Ready", n)
				}
			}
			return nil
		})
		via[leader].kubectl("create", "configmap", "ha-after-rejoin")
		for _, r := range via {
			r.kubectl("get", "configmap", "ha-after-rejoin")
		}
	})

	run("deleting a server's node takes it out of the etcd cluster", func(t *testing.T) {
		// The harder case where it can be had: the deleted server leads
		// the controller-manager, and its lease must move while its
		// member goes. via[stays] is the other joined server.
		gone, stays := joined[1], 1
		holder := leaseHolder(t, via[0], "kube-controller-manager")
		if holder == joined[0].name {
			gone, stays = joined[0], 2
		}
		t.Logf("deleting server %s; the kube-controller-manager lease is held by %s; leases of skiff's controllers: %s", gone.name, holder, skiffLeaseHolders(t, via[0]))
		defer gone.bind(t)()
		other := joined[stays-1]
		defer other.bind(t)()
		if out := via[0].kubectl("get", "node", gone.name, "-o", "jsonpath={.metadata.finalizers}"); !strings.Contains(out, "skiff.io/etcd-member") {
			t.Errorf("server node %s has finalizers %s, want skiff.io/etcd-member", gone.name, out)
		}
		via[0].kubectl("delete", "node", gone.name, "--wait=false")
		// The node goes once its member is removed: the finalizer holds it.
		eventually(t, 2*time.Minute, func() error {
			if _, err := via[0].kubectlErr("get", "node", gone.name); err == nil {
				return fmt.Errorf("node %s still exists", gone.name)
			}
			return nil
		})
		// The process ends once its member learns it was removed, or once
		// upstream's kube-proxy sees its Node deleted. A member cut off
		// before it learns stalls for a while instead: its apiserver
		// times out, and it has been seen to end only when the
		// controller-manager it led missed its 30 s renew deadline, after
		// a further 15 s for its member to stop. A restart finds the
		// member removed and says what to do.
		select {
		case <-gone.exited:
		case <-time.After(3 * time.Minute):
			t.Fatalf("server %s still runs 3 minutes after its node was deleted", gone.name)
		}
		t.Logf("server %s stopped once its node was deleted, with:\n%s", gone.name, tail(gone.log()[gone.logStart:], 400))
		gone.cmd = nil
		code, out := gone.runToExit(3 * time.Minute)
		if code == 0 || !strings.Contains(out, "was removed from the cluster") {
			t.Errorf("the removed server restarted with its data: exit %d, want non-zero and a message that it was removed:\n%s", code, tail(out, 3000))
		}
		// Two members are left, and two are a quorum: the API still writes.
		via[stays].kubectl("create", "configmap", "ha-after-removal")
		via[0].kubectl("get", "configmap", "ha-after-removal")
		// Both remaining servers ride out the removal.
		s.alive()
		other.alive()
	})
}

// newJoiningServer prepares `skiff server` as node name at ip, in its own
// namespaces, joining s's embedded etcd cluster with token.
func newJoiningServer(t *testing.T, s *server, name, ip, token string, extra ...string) *agentNode {
	t.Helper()
	prepareAgentCgroups(t, agentCgroupRoot(name))
	n := newAgent(t, s, name, ip, "", token, append([]string{"--https-listen-port", strconv.Itoa(s.port)}, extra...)...)
	n.args[0] = "server"
	n.args = append(n.args, "--write-kubeconfig", filepath.Join(n.root, "kubeconfig.yaml"))
	return n
}

// through is s's admin view of the cluster through the apiserver at ip
// only (every server's certificate names its node IP).
func (s *server) through(t *testing.T, ip string) *server {
	t.Helper()
	b, err := os.ReadFile(s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "server: ") {
			line = line[:strings.Index(line, "server: ")] + fmt.Sprintf("server: https://%s:%d", ip, s.port)
		}
		out = append(out, line)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-"+ip+".yaml")
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return &server{t: t, kubeconfig: path, port: s.port}
}

// writesReadEverywhere writes a ConfigMap through each server (via[i] at
// ips[i]) and reads it back through every server.
func writesReadEverywhere(t *testing.T, via []*server, ips []string, prefix string) {
	t.Helper()
	for i, w := range via {
		name := fmt.Sprintf("%s-%d", prefix, i)
		w.kubectl("create", "configmap", name, "--from-literal=by="+ips[i])
		for j, r := range via {
			if got := r.kubectl("get", "configmap", name, "-o", "jsonpath={.data.by}"); got != ips[i] {
				t.Errorf("configmap written through %s, read through %s: by=%q", ips[i], ips[j], got)
			}
		}
	}
}

// leaseHolder is the host name of the holder of a kube-system Lease
// (upstream components name themselves <hostname>_<uuid>).
func leaseHolder(t *testing.T, s *server, lease string) string {
	t.Helper()
	out, err := s.kubectlErr("get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}")
	if err != nil {
		return ""
	}
	return holderHost(strings.TrimSpace(out))
}

// holderHost is the host name in a Lease's holder identity, which both
// upstream's controllers and skiff's write as <host>_<suffix>.
func holderHost(identity string) string {
	host, _, _ := strings.Cut(identity, "_")
	return host
}

// skiffLeaseHolders lists who holds each Lease of skiff's elected
// controllers, for the log of a failure.
func skiffLeaseHolders(t *testing.T, s *server) string {
	t.Helper()
	out, err := s.kubectlErr("get", "lease", "-n", "kube-system", "-o", `jsonpath={range .items[*]}{.metadata.name}={.spec.holderIdentity}{" "}{end}`)
	if err != nil {
		return err.Error()
	}
	var held []string
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "skiff-") {
			name, holder, _ := strings.Cut(f, "=")
			held = append(held, name+"="+holderHost(holder))
		}
	}
	return strings.Join(held, " ")
}

func waitReadyReplicas(t *testing.T, s *server, deployment string, n int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		out, err := s.kubectlErr("get", "deployment", deployment, "-o", "jsonpath={.status.readyReplicas}")
		if err != nil {
			return err
		}
		if got, _ := strconv.Atoi(strings.TrimSpace(out)); got != n {
			return fmt.Errorf("deployment %s has %q ready replicas, want %d", deployment, out, n)
		}
		return nil
	})
}

// agentDeployment is a Deployment of the test web image pinned to node.
func agentDeployment(name string, replicas int, node string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
spec:
  replicas: %d
  selector:
    matchLabels: {app: %s}
  template:
    metadata:
      labels: {app: %s}
    spec:
      nodeSelector: {kubernetes.io/hostname: %s}
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %s
        imagePullPolicy: IfNotPresent
`, name, replicas, name, name, node, webImageV1)
}

// keepLogs copies logs to /tmp/skiff-test-logs/<name>/ before the test's
// temp dirs go: a multi-node failure is read from every node's full log.
func keepLogs(t *testing.T, name string, paths []string) {
	dir := filepath.Join(os.TempDir(), "skiff-test-logs", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		dst := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(p)))
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Logf("keep logs: %v", err)
		}
	}
	t.Logf("full logs kept in %s", dir)
}
