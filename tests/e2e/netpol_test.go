package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netpolPod is a test web pod pinned to a node. Its clients give up after
// 3 s, so a blocked connection fails quickly.
func netpolPod(ns, name, node, labels string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {%s}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: %s
    imagePullPolicy: Never
    env: [{name: WEB_TIMEOUT, value: 3s}]
    readinessProbe:
      httpGet: {path: /, port: %d}
      periodSeconds: 2
`, name, ns, labels, node, webImageV1, webPort)
}

// TestNetworkPolicy enforces NetworkPolicies on a server and an agent:
// default-deny ingress across nodes and on one node, an allow rule by
// label, an egress policy that blocks a destination while DNS to kube-dns
// still resolves, rules kept through a restart of the agent's skiff, and
// traffic restored once the policies are deleted. A cluster started with
// --disable-network-policy enforces nothing.
func TestNetworkPolicy(t *testing.T) {
	preflightNode(t)
	const name = "skt-np"
	s, nodes := createTestCluster(t, name, 1)
	serverNode, agent := nodes[0], nodes[1]

	s.kubectl("create", "namespace", "np")
	s.kubectl("create", "namespace", "other")
	s.kubectl("label", "namespace", "other", "purpose=egress-target")
	var manifest strings.Builder
	for _, p := range []struct{ ns, name, node, labels string }{
		{"np", "target", agent, "app: target"},
		{"np", "local-client", agent, "role: other"},
		{"np", "remote-client", serverNode, "role: other"},
		{"np", "allowed-client", serverNode, "role: allowed"},
		{"np", "egress-client", agent, "role: egress"},
		{"other", "open", serverNode, "app: open"},
		{"other", "closed", agent, "app: closed"},
	} {
		manifest.WriteString("---\n" + netpolPod(p.ns, p.name, p.node, p.labels))
	}
	manifest.WriteString(`---
apiVersion: v1
kind: Service
metadata: {name: open, namespace: other}
spec:
  selector: {app: open}
  ports: [{port: 80, targetPort: 8080}]
`)
	s.apply(manifest.String())
	ips := map[string]string{}
	readIPs := func() {
		for _, p := range []string{"np/target", "np/local-client", "np/remote-client", "np/allowed-client", "np/egress-client", "other/open", "other/closed"} {
			ns, pod, _ := strings.Cut(p, "/")
			ips[p] = s.waitPod(ns, pod, 3*time.Minute, func(p podInfo) error { return p.running() }).Status.PodIP
		}
	}
	readIPs()

	get := func(client, target string) error {
		ns, pod, _ := strings.Cut(client, "/")
		url := target
		if ip, ok := ips[target]; ok {
			url = fmt.Sprintf("http://%s:%d/", ip, webPort)
		}
		_, err := s.kubectlRun(time.Minute, "", "exec", "-n", ns, pod, "--", webBinary, "get", url)
		return err
	}
	// expect checks every client against target until each reaches it or
	// not as wanted, and returns how long that took.
	expect := func(t *testing.T, target string, want map[string]bool, timeout time.Duration) time.Duration {
		t.Helper()
		began := time.Now()
		eventually(t, timeout, func() error {
			for client, reach := range want {
				err := get(client, target)
				if reach && err != nil {
					return fmt.Errorf("%s cannot reach %s: %v", client, target, err)
				}
				if !reach && err == nil {
					return fmt.Errorf("%s still reaches %s", client, target)
				}
			}
			return nil
		})
		return time.Since(began)
	}
	all := map[string]bool{"np/local-client": true, "np/remote-client": true, "np/allowed-client": true}
	expect(t, "np/target", all, time.Minute)

	t.Run("default deny blocks across nodes and on one node", func(t *testing.T) {
		defer s.bind(t)()
		s.apply(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: np}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`)
		took := expect(t, "np/target", map[string]bool{"np/local-client": false, "np/remote-client": false, "np/allowed-client": false}, 30*time.Second)
		t.Logf("default-deny ingress took effect within %s", took.Round(100*time.Millisecond))
		// The kubelet's probes still reach the pods the policy isolates.
		time.Sleep(5 * time.Second)
		s.waitPod("np", "target", 5*time.Second, func(p podInfo) error { return p.running() })
	})

	t.Run("an allow rule lets exactly the selected client through", func(t *testing.T) {
		defer s.bind(t)()
		s.apply(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-selected, namespace: np}
spec:
  podSelector: {matchLabels: {app: target}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: allowed}}}]
    ports: [{protocol: TCP, port: 8080}]
`)
		took := expect(t, "np/target", map[string]bool{"np/local-client": false, "np/remote-client": false, "np/allowed-client": true}, 30*time.Second)
		t.Logf("allow rule took effect within %s", took.Round(100*time.Millisecond))
	})

	t.Run("an egress policy blocks a destination and DNS still resolves", func(t *testing.T) {
		defer s.bind(t)()
		s.apply(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-client, namespace: np}
spec:
  podSelector: {matchLabels: {role: egress}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
  - to:
    - namespaceSelector: {matchLabels: {purpose: egress-target}}
      podSelector: {matchLabels: {app: open}}
    ports: [{protocol: TCP, port: 8080}]
`)
		took := expect(t, "other/closed", map[string]bool{"np/egress-client": false, "np/local-client": true}, 30*time.Second)
		t.Logf("egress policy took effect within %s", took.Round(100*time.Millisecond))
		// By name: the lookup goes to kube-dns, the connection to the
		// Service's pod.
		eventually(t, 30*time.Second, func() error {
			if out, err := s.kubectlRun(time.Minute, "", "exec", "-n", "np", "egress-client", "--", webBinary, "resolve", "open.other.svc.cluster.local"); err != nil {
				return fmt.Errorf("resolve under the egress policy: %v: %s", err, out)
			}
			return get("np/egress-client", "http://open.other.svc.cluster.local/")
		})
	})

	t.Run("the rules stay through a restart of the agent's skiff", func(t *testing.T) {
		defer s.bind(t)()
		_, _, pid := clusterNode(t, name, agent)
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, func() error {
			if processAlive(pid) {
				return fmt.Errorf("the agent's skiff (pid %d) still runs", pid)
			}
			return nil
		})
		if err := get("np/remote-client", "np/target"); err == nil {
			t.Error("with the agent's skiff stopped, remote-client reaches target: the rules went with it")
		}
		if code, out := runSkiff(t, 10*time.Minute, "cluster", "start", name); code != 0 {
			t.Fatalf("skiff cluster start: exit %d:\n%s", code, out)
		}
		// A `skiff cluster` node's /run is its own, so a restart is a
		// reboot for its pods: they get new sandboxes and addresses,
		// which the rules must follow.
		readIPs()
		expect(t, "np/target", map[string]bool{"np/local-client": false, "np/remote-client": false, "np/allowed-client": true}, time.Minute)
		expect(t, "other/closed", map[string]bool{"np/egress-client": false}, time.Minute)
	})

	t.Run("deleting the policies restores traffic", func(t *testing.T) {
		defer s.bind(t)()
		s.kubectl("delete", "networkpolicy", "-n", "np", "--all")
		all["np/egress-client"] = true
		took := expect(t, "np/target", all, 30*time.Second)
		expect(t, "other/closed", map[string]bool{"np/egress-client": true}, 30*time.Second)
		t.Logf("traffic restored within %s of the delete", took.Round(100*time.Millisecond))
	})
}

// TestNetworkPolicyDisabled: with --disable-network-policy a policy is
// stored but not enforced, and nodes get no role to read the cluster's
// pods and policies.
func TestNetworkPolicyDisabled(t *testing.T) {
	preflightNode(t)
	const name = "skt-npoff"
	s, nodes := createTestCluster(t, name, 0, "--disable-network-policy")
	node := nodes[0]
	s.apply(netpolPod("default", "target", node, "app: target") + "---\n" + netpolPod("default", "client", node, "role: client") + `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`)
	target := s.waitPod("default", "target", 3*time.Minute, func(p podInfo) error { return p.running() })
	s.waitPod("default", "client", 3*time.Minute, func(p podInfo) error { return p.running() })
	// Give a controller, were one running, ample time to apply it.
	time.Sleep(10 * time.Second)
	if out, err := s.kubectlRun(time.Minute, "", "exec", "client", "--", webBinary, "get", fmt.Sprintf("http://%s:%d/", target.Status.PodIP, webPort)); err != nil {
		t.Errorf("with --disable-network-policy a policy still blocks traffic: %v: %s", err, out)
	}
	netns, _, _ := clusterNode(t, name, node)
	rules, err := exec.Command("ip", "netns", "exec", netns, "iptables-save", "-t", "filter").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save in %s: %v: %s", netns, err, rules)
	}
	if strings.Contains(string(rules), "KUBE-ROUTER") {
		t.Errorf("with --disable-network-policy the node has network policy chains:\n%s", rules)
	}
	if out, err := s.kubectlErr("get", "clusterrolebinding", "skiff:network-policy-reader"); err == nil {
		t.Errorf("with --disable-network-policy nodes may still read every pod and policy:\n%s", out)
	}
}
