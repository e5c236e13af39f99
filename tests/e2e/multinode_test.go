package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMultiNode runs a two-node cluster on this machine: the server node in
// the host's network namespace and `skiff agent` as a second node in its own
// network and mount namespaces, joined by a veth pair on a bridge the test
// creates (10.99.0.0/24; all test traffic goes to those addresses and to pod
// and service addresses). It checks the join (and its refusals), the pod
// network and services across nodes, scheduling by node labels,
// DaemonSets, a server restart under a running agent, and what happens to
// pods when the agent stops. One cluster serves all sub-tests because each
// node start costs about a minute.
func TestMultiNode(t *testing.T) {
	// Leftovers of an interrupted run (nodes, then the network) go first.
	preflightNode(t)
	setupTestNetwork(t)
	s := newNode(t, "--node-ip", bridgeIP, "--flannel-iface", bridgeName)
	t.Cleanup(func() {
		if t.Failed() {
			dumpNetworkDiagnostics(t)
		}
	})
	s.start()
	s.waitReady()
	serverNode := s.waitNodeReady(3 * time.Minute).Metadata.Name
	if n, _ := s.node(serverNode); n.internalIP() != bridgeIP {
		t.Fatalf("server node %s has InternalIP %q, want %s (--node-ip)", serverNode, n.internalIP(), bridgeIP)
	}

	code, out := runSkiff(t, 30*time.Second, "token", "--config", "", "--data-dir", s.dataDir)
	token := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(token, "K10") || !strings.Contains(token, "::") {
		t.Fatalf("skiff token: exit %d, printed %d bytes, want a K10 token", code, len(out))
	}
	caHash := strings.TrimPrefix(token[:strings.Index(token, "::")], "K10")
	secret := token[strings.Index(token, "::")+2:]

	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		})
	}

	// The DaemonSet exists before the agent joins, so joining must add a
	// pod for the new node.
	if !run("daemonset runs on the server node", func(t *testing.T) {
		s.apply(daemonSetManifest)
		s.waitPodsOnNodes("app=ds-web", map[string]int{serverNode: 1}, 2*time.Minute)
	}) {
		t.FailNow()
	}

	run("a wrong token is refused with the cause named", func(t *testing.T) {
		bad := newAgent(t, s, "skt-badtoken", agentIP, "", "K10"+caHash+"::server:"+strings.Repeat("0", 64))
		defer bad.bind(t)()
		code, out := bad.runToExit(2 * time.Minute)
		t.Logf("skiff agent with a wrong secret: exit %d:\n%s", code, tail(out, 1500))
		if code == 0 {
			t.Errorf("skiff agent with a wrong token exited 0")
		}
		if !strings.Contains(out, "refused the join token") {
			t.Errorf("the agent's output does not say the server refused the token")
		}
		if nodes, err := s.nodes(); err == nil && len(nodes) != 1 {
			t.Errorf("%d nodes registered after a refused join, want 1", len(nodes))
		}
	})

	run("a token for another CA is refused before any credential is sent", func(t *testing.T) {
		otherHash := sha256.Sum256([]byte("another cluster's CA"))
		otherToken := "K10" + hex.EncodeToString(otherHash[:]) + "::server:" + secret

		// Against the real server, with the token in SKIFF_TOKEN.
		bad := newAgent(t, s, "skt-badca", agentIP, "", "")
		defer bad.bind(t)()
		bad.env = []string{"SKIFF_TOKEN=" + otherToken}
		code, out := bad.runToExit(2 * time.Minute)
		t.Logf("skiff agent with another CA's hash: exit %d:\n%s", code, tail(out, 1500))
		if code == 0 {
			t.Errorf("skiff agent with a token for another CA exited 0")
		}
		if !strings.Contains(out, "does not match the join token's hash") {
			t.Errorf("the agent's output does not say the server's CA does not match the token")
		}

		// An impostor that serves its own CA gets the real token's holder
		// to ask for /cacerts only: no secret may reach it.
		fake := startFakeJoinServer(t, bridgeIP)
		imp := newAgent(t, s, "skt-impostor", agentIP, fake.url, token)
		defer imp.bind(t)()
		code, out = imp.runToExit(2 * time.Minute)
		t.Logf("skiff agent against an impostor: exit %d:\n%s", code, tail(out, 1500))
		reqs := fake.requests()
		if code == 0 {
			t.Errorf("skiff agent exited 0 against a server whose CA does not match the token")
		}
		if !strings.Contains(out, "does not match the join token's hash") {
			t.Errorf("the agent's output does not say the server's CA does not match the token")
		}
		if len(reqs) == 0 {
			t.Errorf("the agent never asked the impostor for its CA (the check below proves nothing)")
		}
		for _, r := range reqs {
			if r.path != "/cacerts" || len(r.credentials()) > 0 {
				t.Errorf("the agent sent %s %s with headers %v to a server whose CA does not match its token", r.method, r.path, r.credentials())
			}
		}

		// Control: with a token pinned to the impostor's CA, the agent
		// trusts it and does send its credentials, so the fake server
		// would have seen them above.
		pinned := sha256.Sum256(fake.caPEM)
		ctl := newAgent(t, s, "skt-control", agentIP, fake.url, "K10"+hex.EncodeToString(pinned[:])+"::server:"+strings.Repeat("1", 64))
		defer ctl.bind(t)()
		code, out = ctl.runToExit(2 * time.Minute)
		sent := false
		for _, r := range fake.requests() {
			if len(r.credentials()) > 0 {
				sent = true
			}
		}
		if !sent {
			t.Errorf("control: with a token pinned to the fake server's CA the agent sent no credentials (exit %d):\n%s", code, tail(out, 1500))
		}
		if code == 0 || !strings.Contains(out, "refused the join token") {
			t.Errorf("control: the agent refused with 401 exited %d:\n%s", code, tail(out, 1500))
		}
	})

	// The agent below joins right after this.
	run("a flood of bad tokens is refused without harm", func(t *testing.T) {
		caPEM := httpsGet(t, s, nil, "/cacerts", "", 200)
		statuses := floodJoinPort(t, fmt.Sprintf("https://127.0.0.1:%d", s.port), caPEM, 50, 40)
		if statuses[http.StatusUnauthorized]+statuses[http.StatusTooManyRequests] != 2000 {
			t.Errorf("2,000 bad tokens: statuses %v, want only 401 and 429", statuses)
		}
		if out, err := s.kubectlErr("get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("/readyz after the flood: %q, %v", out, err)
		}
	})

	agentName := "skt-agent"
	prepareAgentCgroups(t, agentCgroupRoot(agentName))
	a := newAgent(t, s, agentName, agentIP, "", token)
	a.start()
	// run binds the agent too from here on.
	run = func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			defer a.bind(t)()
			f(t)
		})
	}

	var nodes map[string]nodeInfo
	var serverNet, agentNet *net.IPNet
	if !run("the agent joins: two Ready nodes with distinct pod CIDRs", func(t *testing.T) {
		nodes = s.waitNodes([]string{serverNode, agentName}, 5*time.Minute, a.alive)
		t.Logf("kubectl get nodes -o wide:\n%s", s.kubectl("get", "nodes", "-o", "wide"))
		var err error
		if _, serverNet, err = net.ParseCIDR(nodes[serverNode].Spec.PodCIDR); err != nil {
			t.Fatal(err)
		}
		if _, agentNet, err = net.ParseCIDR(nodes[agentName].Spec.PodCIDR); err != nil {
			t.Fatal(err)
		}
		if serverNet.Contains(agentNet.IP) || agentNet.Contains(serverNet.IP) {
			t.Fatalf("pod CIDRs overlap: %s has %s, %s has %s", serverNode, serverNet, agentName, agentNet)
		}
		if ip := nodes[agentName].internalIP(); ip != agentIP {
			t.Errorf("agent node has InternalIP %q, want %s (--node-ip)", ip, agentIP)
		}
	}) {
		t.FailNow()
	}

	run("the daemonset adds a pod on the new node", func(t *testing.T) {
		pods := s.waitPodsOnNodes("app=ds-web", map[string]int{serverNode: 1, agentName: 1}, 3*time.Minute)
		checkPodIP(t, pods[agentName][0], agentNet)
		checkPodIP(t, pods[serverNode][0], serverNet)
	})

	var p1, p2 podInfo // the spread pods on the server node and on the agent
	if !run("a deployment spreads over both nodes", func(t *testing.T) {
		s.apply(spreadManifest)
		pods := s.waitPodsOnNodes("app=spread", map[string]int{serverNode: 1, agentName: 1}, 3*time.Minute)
		p1, p2 = pods[serverNode][0], pods[agentName][0]
		checkPodIP(t, p1, serverNet)
		checkPodIP(t, p2, agentNet)
		s.kubectl("label", "pod", p1.Metadata.Name, "side=server")
		s.kubectl("label", "pod", p2.Metadata.Name, "side=agent")
	}) {
		t.FailNow()
	}

	// answerFrom checks that body is the web server of pod answering path.
	answerFrom := func(body string, pod podInfo, path string) error {
		if want := "hostname=" + pod.Metadata.Name + " path=" + path + "\n"; body != want {
			return fmt.Errorf("answer %q, want %q", body, want)
		}
		return nil
	}

	run("pods reach each other across nodes by pod IP", func(t *testing.T) {
		eventually(t, time.Minute, func() error {
			out, err := s.podGet(p1.Metadata.Name, webURL(p2.Status.PodIP, webPort, "/server-to-agent"))
			if err != nil {
				return err
			}
			return answerFrom(out, p2, "/server-to-agent")
		})
		eventually(t, time.Minute, func() error {
			out, err := s.podGet(p2.Metadata.Name, webURL(p1.Status.PodIP, webPort, "/agent-to-server"))
			if err != nil {
				return err
			}
			return answerFrom(out, p1, "/agent-to-server")
		})
	})

	run("pods reach pods on the other node through a cluster IP", func(t *testing.T) {
		s.apply(serviceManifest("to-agent", "agent", "ClusterIP") + "---\n" + serviceManifest("to-server", "server", "ClusterIP"))
		toAgent := strings.TrimSpace(s.kubectl("get", "service", "to-agent", "-o", "jsonpath={.spec.clusterIP}"))
		toServer := strings.TrimSpace(s.kubectl("get", "service", "to-server", "-o", "jsonpath={.spec.clusterIP}"))
		// Through the server node's kube-proxy to the agent's pod...
		eventually(t, time.Minute, func() error {
			out, err := s.podGet(p1.Metadata.Name, webURL(toAgent, 80, "/via-cluster-ip"))
			if err != nil {
				return err
			}
			return answerFrom(out, p2, "/via-cluster-ip")
		})
		// ...and through the agent's kube-proxy to the server's pod.
		eventually(t, time.Minute, func() error {
			out, err := s.podGet(p2.Metadata.Name, webURL(toServer, 80, "/via-cluster-ip"))
			if err != nil {
				return err
			}
			return answerFrom(out, p1, "/via-cluster-ip")
		})
	})

	run("a node port on the agent reaches a pod on the server node", func(t *testing.T) {
		s.apply(serviceManifest("np-to-server", "server", "NodePort"))
		port, err := strconv.Atoi(strings.TrimSpace(s.kubectl("get", "service", "np-to-server", "-o", "jsonpath={.spec.ports[0].nodePort}")))
		if err != nil || port == 0 {
			t.Fatalf("service np-to-server has no node port: %v", err)
		}
		eventually(t, time.Minute, func() error {
			body, _, err := hostGet(webURL(agentIP, port, "/via-agent-node-port"))
			if err != nil {
				return err
			}
			return answerFrom(body, p1, "/via-agent-node-port")
		})
	})

	run("a LoadBalancer Service answers on both nodes' addresses, from the host and from a pod on the other node", func(t *testing.T) {
		s.apply(loadBalancerManifest("lb-to-server", "app: spread, side: server", 8092))
		eventually(t, time.Minute, func() error {
			ips := strings.Fields(s.kubectl("get", "service", "lb-to-server", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"))
			if !slices.Equal(ips, []string{bridgeIP, agentIP}) {
				return fmt.Errorf("service lb-to-server has load-balancer addresses %v, want %s and %s", ips, bridgeIP, agentIP)
			}
			return nil
		})
		eventually(t, time.Minute, func() error {
			body, _, err := hostGet(webURL(agentIP, 8092, "/via-agent-load-balancer"))
			if err != nil {
				return err
			}
			return answerFrom(body, p1, "/via-agent-load-balancer")
		})
		eventually(t, time.Minute, func() error {
			out, err := s.podGet(p2.Metadata.Name, webURL(bridgeIP, 8092, "/from-agent-pod"))
			if err != nil {
				return err
			}
			return answerFrom(out, p1, "/from-agent-pod")
		})
		// Once a node is labelled to serve, only labelled nodes do.
		s.kubectl("label", "node", agentName, "svccontroller.skiff.io/enablelb=true")
		defer s.kubectl("label", "node", agentName, "svccontroller.skiff.io/enablelb-")
		eventually(t, time.Minute, func() error {
			ips := s.kubectl("get", "service", "lb-to-server", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
			if ips != agentIP {
				return fmt.Errorf("with only %s labelled enablelb=true, service lb-to-server has addresses %q, want %s", agentName, ips, agentIP)
			}
			return nil
		})
	})

	run("a claim used on the agent gets a volume on the agent", func(t *testing.T) {
		s.apply(claimManifest("agent-data") + "---\n" + volumePodManifest("agent-writer", "agent-data", agentName, "write", "/data/where", "agent"))
		s.waitPod("default", "agent-writer", 3*time.Minute, podInfo.running)
		pv := strings.TrimSpace(s.kubectl("get", "pvc", "agent-data", "-o", "jsonpath={.spec.volumeName}"))
		if affinity := s.kubectl("get", "pv", pv, "-o", "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"); affinity != agentName {
			t.Errorf("volume %s is tied to node %q, want %s", pv, affinity, agentName)
		}
		eventually(t, 30*time.Second, func() error {
			out, err := s.kubectlErr("exec", "agent-writer", "--", webBinary, "cat", "/data/where")
			if err != nil || out != "agent" {
				return fmt.Errorf("the agent's pod reads %q from its volume (%v)", out, err)
			}
			return nil
		})
		s.kubectl("delete", "pod", "agent-writer", "--wait=true")
		s.kubectl("delete", "pvc", "agent-data", "--wait=true")
	})

	run("cluster DNS and the ingress serve the agent node too", func(t *testing.T) {
		toServer := strings.TrimSpace(s.kubectl("get", "service", "to-server", "-o", "jsonpath={.spec.clusterIP}"))
		for name, want := range map[string]string{"to-server.default.svc.cluster.local": toServer, "to-server": toServer, serverNode: bridgeIP} {
			eventually(t, 2*time.Minute, func() error {
				out, err := s.kubectlErr("exec", p2.Metadata.Name, "--", webBinary, "resolve", name)
				if err != nil {
					return err
				}
				if !strings.Contains(" "+strings.TrimSpace(out)+" ", " "+want+" ") {
					return fmt.Errorf("%s resolves to %q on the agent, want %s", name, out, want)
				}
				return nil
			})
		}
		// The ingress DaemonSet also runs on the agent: its port 80 routes
		// to a pod on the server node.
		s.kubectl("create", "ingress", "spread", "--rule=spread.example/*=to-server:80")
		eventually(t, 3*time.Minute, func() error {
			req, err := http.NewRequest("GET", webURL(agentIP, 80, "/via-agent-ingress"), nil)
			if err != nil {
				return err
			}
			req.Host = "spread.example"
			resp, err := hostClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return answerFrom(string(body), p1, "/via-agent-ingress")
		})
	})

	run("logs and exec work for pods on the agent", func(t *testing.T) {
		if out := s.kubectl("exec", p2.Metadata.Name, "--", webBinary, "echo", "hi"); out != "hi\n" {
			t.Errorf("kubectl exec on the agent printed %q", out)
		}
		eventually(t, 30*time.Second, func() error {
			out, err := s.kubectlErr("logs", p2.Metadata.Name)
			if err != nil {
				return err
			}
			if !strings.Contains(out, "/server-to-agent") {
				return fmt.Errorf("kubectl logs %s does not show the request from the other node:\n%s", p2.Metadata.Name, tail(out, 2000))
			}
			return nil
		})
	})

	run("a labelled node gets the pods selecting the label", func(t *testing.T) {
		s.kubectl("label", "node", agentName, "disktype=hdd")
		s.apply(`apiVersion: v1
kind: Pod
metadata:
  name: hdd
  labels: {app: hdd}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {disktype: hdd}
  containers:
  - name: web
    image: ` + webImageV1 + `
    imagePullPolicy: IfNotPresent
`)
		p := s.waitPod("default", "hdd", 2*time.Minute, podInfo.running)
		if p.Spec.NodeName != agentName {
			t.Errorf("pod hdd with nodeSelector disktype=hdd runs on %q, want %s", p.Spec.NodeName, agentName)
		}
	})

	run("the agent stays Ready through a server restart and its pods keep running", func(t *testing.T) {
		before := containersOn(t, s, agentName)
		if len(before) < 3 {
			t.Fatalf("only %d running pods on the agent before the restart: %v", len(before), before)
		}
		t.Logf("pods on the agent before the restart: %v", before)
		agentPID := a.cmd.Process.Pid

		s.stop()
		time.Sleep(10 * time.Second) // the agent runs on with its server down
		a.alive()
		restartedAt := time.Now()
		s.start()
		s.waitReady()
		// The agent's kubelet renewed its lease with the new server...
		s.waitKubeletSince(agentName, restartedAt, 3*time.Minute)
		s.waitKubeletSince(serverNode, restartedAt, 3*time.Minute)
		s.waitNodes([]string{serverNode, agentName}, 3*time.Minute, a.alive)
		// ...without being restarted.
		a.alive()
		if a.cmd.Process.Pid != agentPID || strings.Count(a.log(), "===== skiff agent") != 1 {
			t.Fatalf("the agent was restarted")
		}
		// The node stays Ready and its containers are the same ones for a
		// while after the restart.
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			a.alive()
			n, err := s.node(agentName)
			if err == nil && n.condition("Ready") != "True" {
				t.Fatalf("agent node is not Ready after the server restart: %+v", n.Status.Conditions)
			}
			after := containersOn(t, s, agentName)
			for pod, ids := range before {
				if after[pod] != ids {
					t.Fatalf("pod %s on the agent: containers (id:restarts) were %s before the server restart, now %q", pod, ids, after[pod])
				}
			}
			time.Sleep(5 * time.Second)
		}
		// And the pod network across nodes still works.
		eventually(t, time.Minute, func() error {
			out, err := s.podGet(p1.Metadata.Name, webURL(p2.Status.PodIP, webPort, "/after-restart"))
			if err != nil {
				return err
			}
			return answerFrom(out, p2, "/after-restart")
		})
	})

	run("a stopped agent's node goes NotReady and its pods are evicted per their tolerations", func(t *testing.T) {
		// Both replicas of "evict" (which tolerate an unreachable node
		// for 10s) and the one of "patient" (default tolerations: 300s)
		// go to the agent while the server node is cordoned.
		s.kubectl("cordon", serverNode)
		uncordoned := false
		uncordon := func() {
			if !uncordoned {
				s.kubectl("uncordon", serverNode)
				uncordoned = true
			}
		}
		defer uncordon()
		s.apply(evictManifest("evict", 2, 10) + "---\n" + evictManifest("patient", 1, -1))
		evicted := s.waitPodsOnNodes("app=evict", map[string]int{agentName: 2}, 3*time.Minute)[agentName]
		patient := s.waitPodsOnNodes("app=patient", map[string]int{agentName: 1}, 3*time.Minute)[agentName][0]
		ds := s.waitPodsOnNodes("app=ds-web", map[string]int{serverNode: 1, agentName: 1}, time.Minute)[agentName][0]
		uncordon()

		a.stop()
		stoppedAt := time.Now()
		eventually(t, 3*time.Minute, func() error {
			s.alive()
			n, err := s.node(agentName)
			if err != nil {
				return err
			}
			if st := n.condition("Ready"); st == "True" {
				return fmt.Errorf("agent node still Ready")
			}
			return nil
		})
		t.Logf("agent node NotReady %s after the agent stopped:\n%s", time.Since(stoppedAt).Round(time.Second), s.kubectl("get", "nodes"))

		// The pods that tolerate an unreachable node for 10s are evicted
		// and the deployment replaces them on the server node.
		s.waitPodsOnNodes("app=evict", map[string]int{serverNode: 2}, 4*time.Minute)
		t.Logf("evicted pods replaced on %s %s after the agent stopped", serverNode, time.Since(stoppedAt).Round(time.Second))
		pods, err := s.pods("default", "app=evict")
		if err != nil {
			t.Fatal(err)
		}
		for _, old := range evicted {
			for _, p := range pods {
				if p.Metadata.Name == old.Metadata.Name && p.Metadata.DeletionTimestamp == nil {
					t.Errorf("evicted pod %s on the agent is not being deleted", p.Metadata.Name)
				}
			}
		}
		// The default toleration (300s) has not run out yet, and
		// DaemonSet pods tolerate an unreachable node for ever.
		for _, keep := range []podInfo{patient, ds} {
			p := s.waitPod("default", keep.Metadata.Name, time.Minute, func(podInfo) error { return nil })
			if p.Metadata.DeletionTimestamp != nil || p.Spec.NodeName != agentName {
				t.Errorf("pod %s was evicted from the agent %s after it stopped (deleting: %v, node %q); only pods with a shorter toleration should be",
					keep.Metadata.Name, time.Since(stoppedAt).Round(time.Second), p.Metadata.DeletionTimestamp != nil, p.Spec.NodeName)
			}
		}
	})

	s.stop()
}

const daemonSetManifest = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ds-web
spec:
  selector:
    matchLabels: {app: ds-web}
  template:
    metadata:
      labels: {app: ds-web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: ` + webImageV1 + `
        imagePullPolicy: IfNotPresent
`

// spreadManifest: two replicas that may not share a node.
const spreadManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 2
  selector:
    matchLabels: {app: spread}
  template:
    metadata:
      labels: {app: spread}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {app: spread}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: ` + webImageV1 + `
        imagePullPolicy: IfNotPresent
`

// serviceManifest: port 80 to the web port of the spread pod labelled
// side=<side>.
func serviceManifest(name, side, typ string) string {
	return `apiVersion: v1
kind: Service
metadata:
  name: ` + name + `
spec:
  type: ` + typ + `
  selector: {app: spread, side: ` + side + `}
  ports:
  - port: 80
    targetPort: 8080
`
}

// evictManifest: a deployment whose pods tolerate a not-ready or
// unreachable node for tolerationSeconds (negative: the defaults).
func evictManifest(name string, replicas, tolerationSeconds int) string {
	tolerations := ""
	if tolerationSeconds >= 0 {
		tolerations = fmt.Sprintf(`      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: %d}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: %d}
`, tolerationSeconds, tolerationSeconds)
	}
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
      terminationGracePeriodSeconds: 1
%s      containers:
      - name: web
        image: %s
        imagePullPolicy: IfNotPresent
`, name, replicas, name, name, tolerations, webImageV1)
}
