package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

// faultCuts are the network cuts TestNetworkFaults makes: 30 s in CI;
// SKIFF_FAULT_CUTS=30s,2m,10m runs the whole set (a long soak).
func faultCuts(t *testing.T) []time.Duration {
	spec := os.Getenv("SKIFF_FAULT_CUTS")
	if spec == "" {
		spec = "30s"
	}
	var out []time.Duration
	for _, f := range strings.Split(spec, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			t.Fatalf("SKIFF_FAULT_CUTS=%q: %q is not a duration such as 30s or 2m", spec, f)
		}
		out = append(out, d)
	}
	return out
}

// clusterState is the part of a `skiff cluster` state file the fault
// tests use to reach a node from outside.
type clusterState struct {
	Nodes []struct {
		Name  string `json:"name"`
		Netns string `json:"netns"`
		Veth  string `json:"veth"`
		PID   int    `json:"pid"`
	} `json:"nodes"`
}

func readClusterState(t *testing.T, name string) clusterState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(config.ClustersDir, name, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st clusterState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// clusterNode returns the named node's netns, host-side veth and skiff PID.
func clusterNode(t *testing.T, cluster, node string) (netns, veth string, pid int) {
	t.Helper()
	for _, n := range readClusterState(t, cluster).Nodes {
		if n.Name == node {
			return n.Netns, n.Veth, n.PID
		}
	}
	t.Fatalf("cluster %s has no node %s", cluster, node)
	return "", "", 0
}

func processAlive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// defaultUnreachableToleration is how long a pod that declares no
// toleration of node.kubernetes.io/unreachable stays bound to an
// unreachable node: the DefaultTolerationSeconds admission plugin's 300 s.
const defaultUnreachableToleration = 300 * time.Second

// unreachableToleration, appended to agentDeployment's manifest, makes its
// pod tolerate an unreachable node for as long as it lasts.
const unreachableToleration = `      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}
`

// TestNetworkFaults cuts an agent off its server (its link down) and
// restarts the server (SIGTERM, then kill -9) while the agent runs: the
// agent's pods keep running and serving local traffic throughout, and
// once the server is back in reach the node renews its lease and runs
// new pods within 30 s, without a restart of the agent.
func TestNetworkFaults(t *testing.T) {
	preflightNode(t)
	const name = "skt-f"
	s, nodes := createTestCluster(t, name, 1)
	serverNode, agent := nodes[0], nodes[1]
	agentNetns, agentVeth, agentPID := clusterNode(t, name, agent)

	// "local" rides out cuts of any length, as an edge workload that must
	// declares: it tolerates the unreachable taint without a time limit.
	// "evictable" keeps upstream's default toleration (DefaultTolerationSeconds):
	// it stays through a shorter cut and is replaced after a longer one.
	s.apply(agentDeployment("local", 1, agent) + unreachableToleration)
	s.apply(agentDeployment("evictable", 1, agent))
	pod := s.waitPodsOnNodes("app=local", map[string]int{agent: 1}, 3*time.Minute)[agent][0]
	evictable := s.waitPodsOnNodes("app=evictable", map[string]int{agent: 1}, 3*time.Minute)[agent][0]
	web := testImages(t).binary
	// localGet asks the agent's pod from the agent's own network
	// namespace: traffic that never leaves the node.
	localGet := func() error {
		out, err := exec.Command("ip", "netns", "exec", agentNetns, web, "get", fmt.Sprintf("http://%s:%d/", pod.Status.PodIP, webPort)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := localGet(); err != nil {
		t.Fatalf("the agent cannot reach its own pod before any fault: %v", err)
	}
	containersBefore := containersOn(t, s, agent)

	// recovered checks, within 30 s of since, that the agent renewed its
	// node lease after since, is Ready, and runs a new pod, and that
	// neither the agent's skiff nor its pods restarted.
	probe := 0
	recovered := func(t *testing.T, since time.Time) {
		t.Helper()
		began := time.Now()
		eventually(t, 30*time.Second, func() error {
			renew := strings.TrimSpace(s.kubectl("get", "lease", "-n", "kube-node-lease", agent, "-o", "jsonpath={.spec.renewTime}"))
			at, err := time.Parse(time.RFC3339Nano, renew)
			if err != nil {
				return fmt.Errorf("lease renewTime %q: %v", renew, err)
			}
			if at.Before(since) {
				return fmt.Errorf("the agent's lease was last renewed at %s, before %s", at.Format(time.RFC3339), since.Format(time.RFC3339))
			}
			n, err := s.node(agent)
			if err != nil {
				return err
			}
			if n.condition("Ready") != "True" {
				return fmt.Errorf("node %s is not Ready", agent)
			}
			return nil
		})
		leaseAfter := time.Since(began)
		probe++
		probeName := fmt.Sprintf("probe-%d", probe)
		s.kubectl("run", probeName, "--image="+webImageV1, "--image-pull-policy=Never", "--restart=Never",
			"--overrides", fmt.Sprintf(`{"spec":{"nodeSelector":{"kubernetes.io/hostname":%q}}}`, agent))
		s.waitPod("default", probeName, 30*time.Second, func(p podInfo) error { return p.running() })
		t.Logf("after the fault: lease renewed and node Ready in %s, a new pod running on it in %s", leaseAfter.Round(time.Second), time.Since(began).Round(time.Second))
		if _, _, pid := clusterNode(t, name, agent); pid != agentPID || !processAlive(agentPID) {
			t.Errorf("the agent's skiff restarted (pid %d, now %d)", agentPID, pid)
		}
		if now := containersOn(t, s, agent)[pod.Metadata.Name]; now != containersBefore[pod.Metadata.Name] {
			t.Errorf("the agent's pod restarted: containers %q, before %q", now, containersBefore[pod.Metadata.Name])
		}
		s.kubectl("delete", "pod", probeName, "--wait=false")
	}

	for _, cut := range faultCuts(t) {
		t.Run(fmt.Sprintf("the agent cut off for %s", cut), func(t *testing.T) {
			defer s.bind(t)()
			if _, err := ipCmd("link", "set", agentVeth, "down"); err != nil {
				t.Fatal(err)
			}
			restored := false
			defer func() {
				if !restored {
					_, _ = ipCmd("link", "set", agentVeth, "up")
				}
			}()
			end := time.Now().Add(cut)
			for time.Now().Before(end) {
				if err := localGet(); err != nil {
					t.Errorf("%s into the cut, the agent's pod does not answer on the node: %v", cut-time.Until(end).Round(time.Second), err)
					break
				}
				if !processAlive(agentPID) {
					t.Fatalf("the agent's skiff exited during the cut")
				}
				time.Sleep(3 * time.Second)
			}
			if _, err := ipCmd("link", "set", agentVeth, "up"); err != nil {
				t.Fatal(err)
			}
			restored = true
			recovered(t, time.Now())
			switch {
			case cut < defaultUnreachableToleration-10*time.Second:
				if _, ok := containersOn(t, s, agent)[evictable.Metadata.Name]; !ok {
					t.Errorf("pod %s, with the default toleration, did not outlive a %s cut", evictable.Metadata.Name, cut)
				}
			case cut > defaultUnreachableToleration+time.Minute:
				// The kubelet carries out the eviction once it sees it.
				eventually(t, time.Minute, func() error {
					pods, err := s.pods("default", "app=evictable")
					if err != nil {
						return err
					}
					for _, p := range pods {
						if p.Metadata.Name == evictable.Metadata.Name {
							return fmt.Errorf("pod %s, with the default %s toleration, is still there after a %s cut", p.Metadata.Name, defaultUnreachableToleration, cut)
						}
					}
					return nil
				})
				evictable = s.waitPodsOnNodes("app=evictable", map[string]int{agent: 1}, time.Minute)[agent][0]
			}
		})
	}

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(fmt.Sprintf("the server restarted after %s", sig), func(t *testing.T) {
			defer s.bind(t)()
			_, _, serverPID := clusterNode(t, name, serverNode)
			if err := syscall.Kill(serverPID, sig); err != nil {
				t.Fatal(err)
			}
			eventually(t, 2*time.Minute, func() error {
				if processAlive(serverPID) {
					return fmt.Errorf("the server's skiff (pid %d) still runs", serverPID)
				}
				return nil
			})
			if err := localGet(); err != nil {
				t.Errorf("with the server down, the agent's pod does not answer on the node: %v", err)
			}
			if code, out := runSkiff(t, 10*time.Minute, "cluster", "start", name); code != 0 {
				t.Fatalf("skiff cluster start: exit %d, output:\n%s", code, out)
			}
			recovered(t, time.Now())
		})
	}
}

// TestNodeRejoin: an agent whose host reboots (every process of the node
// gone, its data kept) rejoins with no action; one whose host is
// reinstalled (its data dir and kubelet dir wiped) is refused while its
// old Node exists, with a message that says to delete that Node, and
// rejoins under the same name once it is deleted.
func TestNodeRejoin(t *testing.T) {
	preflightNode(t)
	const name = "skt-r"
	s, nodes := createTestCluster(t, name, 1)
	serverNode, agent := nodes[0], nodes[1]
	// The agent's host: what `skiff cluster` keeps for it beside its data
	// dir (its kubelet root, /var/lib/cni and /var/log).
	agentHost := filepath.Join(config.ClustersDir, name, "nodes", agent)
	agentData := filepath.Join(agentHost, "data")

	probe := 0
	runsPods := func(t *testing.T) {
		t.Helper()
		probe++
		probeName := fmt.Sprintf("probe-%d", probe)
		s.kubectl("run", probeName, "--image="+webImageV1, "--image-pull-policy=Never", "--restart=Never",
			"--overrides", fmt.Sprintf(`{"spec":{"nodeSelector":{"kubernetes.io/hostname":%q}}}`, agent))
		s.waitPod("default", probeName, 2*time.Minute, func(p podInfo) error { return p.running() })
		s.kubectl("delete", "pod", probeName, "--wait=false")
	}
	runsPods(t)

	t.Run("a rebooted host rejoins with no action", func(t *testing.T) {
		defer s.bind(t)()
		_, _, pid := clusterNode(t, name, agent)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, func() error {
			if processAlive(pid) {
				return fmt.Errorf("the agent's skiff (pid %d) still runs", pid)
			}
			return nil
		})
		// `skiff cluster start` kills what is left of the node (containerd,
		// shims, containers) and starts it on a fresh /run, as a boot does.
		since := time.Now()
		if code, out := runSkiff(t, 10*time.Minute, "cluster", "start", name); code != 0 {
			t.Fatalf("skiff cluster start after the reboot: exit %d, output:\n%s", code, out)
		}
		s.waitKubeletSince(agent, since, 2*time.Minute)
		runsPods(t)
	})

	t.Run("a reinstalled host is refused while its old Node exists", func(t *testing.T) {
		defer s.bind(t)()
		if code, out := runSkiff(t, 5*time.Minute, "cluster", "stop", name); code != 0 {
			t.Fatalf("skiff cluster stop: exit %d, output:\n%s", code, out)
		}
		for _, dir := range []string{agentData, filepath.Join(agentHost, "kubelet"), filepath.Join(agentHost, "var-lib-cni"), filepath.Join(agentHost, "var-log")} {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatalf("wipe the agent's host: %v", err)
			}
		}
		// The reinstalled host gets its airgap images back.
		imagesDir := layout.New(agentData).Agent.ImagesDir
		if err := os.MkdirAll(imagesDir, 0o700); err != nil {
			t.Fatal(err)
		}
		copyFile(t, testImageTarball(t, webImageV1), filepath.Join(imagesDir, "web-v1.tar"))

		code, out := runSkiff(t, 10*time.Minute, "cluster", "start", name)
		want := fmt.Sprintf("delete the old Node with `kubectl delete node %s` and start this agent again", agent)
		if code == 0 || !strings.Contains(out, want) {
			t.Fatalf("skiff cluster start with the agent reinstalled: exit %d, want a failure saying %q; output:\n%s", code, want, out)
		}
	})

	t.Run("the reinstalled host rejoins once its old Node is deleted", func(t *testing.T) {
		defer s.bind(t)()
		s.kubectl("delete", "node", agent)
		since := time.Now()
		if code, out := runSkiff(t, 10*time.Minute, "cluster", "start", name); code != 0 {
			t.Fatalf("skiff cluster start after the Node was deleted: exit %d, output:\n%s", code, out)
		}
		s.waitNodes([]string{serverNode, agent}, 2*time.Minute)
		s.waitKubeletSince(agent, since, 2*time.Minute)
		runsPods(t)
	})
}
