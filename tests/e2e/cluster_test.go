package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/cgroups"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/tests/nodetest"
)

// TestClusterCommand drives `skiff cluster` as a CI user would: a cluster
// of one server and two agents, each node in its own namespaces, images
// from --image-dir and from load, a stop and start, a second cluster
// beside it, and deletes that leave the host as they found it.
func TestClusterCommand(t *testing.T) {
	preflightNode(t)
	const a, b = "skt-a", "skt-b"
	for _, name := range []string{a, b} {
		if _, err := os.Stat(filepath.Join(config.ClustersDir, name)); err == nil {
			t.Logf("preflight: deleting the cluster %s an earlier run left", name)
			runSkiff(t, 5*time.Minute, "cluster", "delete", name)
		}
	}
	before := snapshotHostState(t)

	imageDir := t.TempDir()
	copyFile(t, testImageTarball(t, webImageV1), filepath.Join(imageDir, "web-v1.tar"))
	kcA := filepath.Join(t.TempDir(), "a.yaml")
	// Created with a file the caller holds open, as `flock LOCK skiff
	// cluster create` does: the nodes outlive the command and must not
	// keep it (a held lock would block whoever waits for it).
	held, err := os.Create(filepath.Join(t.TempDir(), "held.lock"))
	if err != nil {
		t.Fatal(err)
	}
	create := exec.Command(skiffBin, "cluster", "create", "--agents", "2", "--image-dir", imageDir, "--kubeconfig", kcA, a)
	create.ExtraFiles = []*os.File{held}
	outBytes, _ := create.CombinedOutput()
	held.Close()
	code, out := create.ProcessState.ExitCode(), string(outBytes)
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(config.ClustersDir, a)); err == nil {
			if t.Failed() {
				dumpClusterLogs(t, a)
			}
			runSkiff(t, 5*time.Minute, "cluster", "delete", a)
		}
	})
	if code != 0 || !regexp.MustCompile(`cluster skt-a ready in [0-9.]+m?s`).MatchString(out) {
		t.Fatalf("skiff cluster create %s: exit %d, output:\n%s", a, code, out)
	}
	t.Logf("%s", strings.TrimSpace(out))
	for _, pid := range clusterProcesses(a) {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if target, _ := os.Readlink(fd); target == held.Name() {
				t.Errorf("node process %d keeps the file its creator held open (%s)", pid, fd)
			}
		}
	}
	s := &server{t: t, kubeconfig: kcA}
	server1, agent1, agent2 := a+"-server-1", a+"-agent-1", a+"-agent-2"
	s.waitNodes([]string{server1, agent1, agent2}, time.Minute)

	code, out = runSkiff(t, 5*time.Minute, "cluster", "create", a)
	if code == 0 || !strings.Contains(out, "already exists") {
		t.Errorf("a second create of %s: exit %d, output %q; want a refusal naming the existing cluster", a, code, out)
	}

	t.Run("a DaemonSet runs on every node", func(t *testing.T) {
		defer s.bind(t)()
		s.apply(everyNodeManifest("everywhere", webImageV1))
		s.waitPodsOnNodes("app=everywhere", map[string]int{server1: 1, agent1: 1, agent2: 1}, 3*time.Minute)
	})

	t.Run("a pod on one agent reaches a Service backed by the other", func(t *testing.T) {
		defer s.bind(t)()
		s.apply(agentDeployment("backend", 2, agent2))
		s.apply(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{port: 80, targetPort: %d}]
`, webPort))
		s.waitPodsOnNodes("app=backend", map[string]int{agent2: 2}, 3*time.Minute)
		client := s.waitPodsOnNodes("app=everywhere", map[string]int{server1: 1, agent1: 1, agent2: 1}, time.Minute)[agent1][0]
		eventually(t, time.Minute, func() error {
			_, err := s.podGet(client.Metadata.Name, "http://backend.default.svc.cluster.local/")
			return err
		})
	})

	t.Run("load makes an image usable on every node", func(t *testing.T) {
		defer s.bind(t)()
		code, out := runSkiff(t, 5*time.Minute, "cluster", "load", a, testImageTarball(t, webImageV2))
		if code != 0 {
			t.Fatalf("skiff cluster load: exit %d, output:\n%s", code, out)
		}
		s.apply(everyNodeManifest("loaded", webImageV2))
		s.waitPodsOnNodes("app=loaded", map[string]int{server1: 1, agent1: 1, agent2: 1}, 3*time.Minute)
	})

	t.Run("stop and start keep the cluster's state and bring its pods back", func(t *testing.T) {
		defer s.bind(t)()
		s.kubectl("create", "configmap", "kept", "--from-literal=k=v")
		beforeStop := map[string]map[string]string{}
		for _, n := range []string{server1, agent1, agent2} {
			beforeStop[n] = containersOn(t, s, n)
		}
		if code, out := runSkiff(t, 5*time.Minute, "cluster", "stop", a); code != 0 {
			t.Fatalf("skiff cluster stop: exit %d, output:\n%s", code, out)
		}
		if _, out := runSkiff(t, time.Minute, "cluster", "list"); !regexp.MustCompile(`(?m)^skt-a\s+1\s+2\s+0/3\s`).MatchString(out) {
			t.Errorf("skiff cluster list after stop:\n%s\nwant skt-a with 0/3 nodes running", out)
		}
		if procs := clusterProcesses(a); len(procs) > 0 {
			t.Errorf("processes of the stopped cluster are still running: %v", procs)
		}
		if code, out := runSkiff(t, 15*time.Minute, "cluster", "start", a); code != 0 {
			t.Fatalf("skiff cluster start: exit %d, output:\n%s", code, out)
		}
		if got := s.kubectl("get", "configmap", "kept", "-o", "jsonpath={.data.k}"); got != "v" {
			t.Errorf("configmap after stop and start: k=%q, want v", got)
		}
		// The status stored before the stop says Running too: the
		// containers must be new ones.
		eventually(t, 3*time.Minute, func() error {
			for n, old := range beforeStop {
				now := containersOn(t, s, n)
				for pod, ids := range old {
					if now[pod] == "" || now[pod] == ids {
						return fmt.Errorf("pod %s on %s: containers %q, before the stop %q", pod, n, now[pod], ids)
					}
				}
			}
			return nil
		})
		s.waitPodsOnNodes("app=everywhere", map[string]int{server1: 1, agent1: 1, agent2: 1}, 3*time.Minute)
		s.waitPodsOnNodes("app=backend", map[string]int{agent2: 2}, 3*time.Minute)
	})

	t.Run("two clusters side by side do not see each other", func(t *testing.T) {
		defer s.bind(t)()
		kcB := filepath.Join(t.TempDir(), "b.yaml")
		// Its one node named, labelled and tainted by a cluster file.
		clusterFile := filepath.Join(t.TempDir(), "cluster.yaml")
		if err := os.WriteFile(clusterFile, []byte(`nodes:
  - role: server
    name: skt-b-cp
    labels: {tier: control}
    taints: ["dedicated=ci:PreferNoSchedule"]
`), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := runSkiff(t, 15*time.Minute, "cluster", "create", "--config", clusterFile, "--kubeconfig", kcB, b)
		t.Cleanup(func() {
			if _, err := os.Stat(filepath.Join(config.ClustersDir, b)); err == nil {
				if t.Failed() {
					dumpClusterLogs(t, b)
				}
				runSkiff(t, 5*time.Minute, "cluster", "delete", b)
			}
		})
		if code != 0 {
			t.Fatalf("skiff cluster create %s: exit %d, output:\n%s", b, code, out)
		}
		sb := &server{t: t, kubeconfig: kcB}
		sb.waitNodes([]string{"skt-b-cp"}, time.Minute)
		if got := sb.kubectl("get", "node", "skt-b-cp", "-o", "jsonpath={.metadata.labels.tier} {.spec.taints[*].key}={.spec.taints[*].value}:{.spec.taints[*].effect}"); got != "control dedicated=ci:PreferNoSchedule" {
			t.Errorf("node skt-b-cp's label and taint from the cluster file: %q", got)
		}
		s.waitNodes([]string{server1, agent1, agent2}, time.Minute)
		if got := sb.kubectl("get", "configmap", "kept", "--ignore-not-found", "-o", "name"); got != "" {
			t.Errorf("cluster %s sees cluster %s's configmap: %q", b, a, got)
		}
		ipB := clusterNodeIP(t, kcB)
		// The host reaches both; a node of one cluster never reaches the
		// other's.
		if err := dialFrom("", ipB); err != nil {
			t.Errorf("the host cannot reach %s's server at %s: %v", b, ipB, err)
		}
		if err := dialFrom("skiff_"+a+"_"+server1, ipB); err == nil {
			t.Errorf("node %s reached cluster %s's server at %s", server1, b, ipB)
		}
		if code, out := runSkiff(t, 5*time.Minute, "cluster", "delete", b); code != 0 {
			t.Fatalf("skiff cluster delete %s: exit %d, output:\n%s", b, code, out)
		}
		s.waitNodes([]string{server1, agent1, agent2}, time.Minute)
	})

	if code, out := runSkiff(t, 5*time.Minute, "cluster", "delete", a); code != 0 {
		t.Fatalf("skiff cluster delete %s: exit %d, output:\n%s", a, code, out)
	}
	if _, err := os.Stat(kcA); err == nil {
		t.Errorf("delete left the kubeconfig %s", kcA)
	}
	after := snapshotHostState(t)
	for _, what := range []string{"processes", "mounts", "links", "iptables", "netns", "cgroups"} {
		if gone, added := diffLines(before[what], after[what]); len(gone)+len(added) > 0 {
			t.Errorf("the host's %s differ after delete: removed %q, added %q", what, gone, added)
		}
	}
}

// everyNodeManifest is a DaemonSet of name running image on every node,
// tainted ones too.
func everyNodeManifest(name, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: %s}
spec:
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      tolerations: [{operator: Exists}]
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: %s
          imagePullPolicy: Never
`, name, name, name, image)
}

// createTestCluster makes a `skiff cluster` with the test web image
// loaded, deleted when the test ends; once its nodes are Ready it returns
// a client of it and the nodes' names, the server's first.
func createTestCluster(t *testing.T, name string, agents int, serverFlags ...string) (*server, []string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(config.ClustersDir, name)); err == nil {
		runSkiff(t, 5*time.Minute, "cluster", "delete", name)
	}
	imageDir := t.TempDir()
	copyFile(t, testImageTarball(t, webImageV1), filepath.Join(imageDir, "web-v1.tar"))
	kc := filepath.Join(t.TempDir(), name+".yaml")
	args := []string{"cluster", "create", "--agents", fmt.Sprint(agents), "--image-dir", imageDir, "--kubeconfig", kc, name}
	if len(serverFlags) > 0 {
		args = append(append(args, "--"), serverFlags...)
	}
	code, out := runSkiff(t, 15*time.Minute, args...)
	t.Cleanup(func() {
		if t.Failed() {
			dumpClusterLogs(t, name)
		}
		runSkiff(t, 5*time.Minute, "cluster", "delete", name)
	})
	if code != 0 {
		t.Fatalf("skiff cluster create: exit %d, output:\n%s", code, out)
	}
	s := &server{t: t, kubeconfig: kc}
	nodes := []string{name + "-server-1"}
	for i := 1; i <= agents; i++ {
		nodes = append(nodes, fmt.Sprintf("%s-agent-%d", name, i))
	}
	s.waitNodes(nodes, time.Minute)
	return s, nodes
}

// clusterProcesses lists the processes that run a cluster's node, found by
// the cluster's dir on their command line or their cgroups.
func clusterProcesses(name string) []int {
	dir := filepath.Join(config.ClustersDir, name)
	var out []int
	for _, p := range nodetest.Procs(func(p nodetest.Proc) bool {
		for _, a := range p.Argv {
			if strings.Contains(a, dir+"/") {
				return true
			}
		}
		return strings.Contains(p.Cgroup, ":/skiff_"+name+"_")
	}) {
		out = append(out, p.PID)
	}
	return out
}

// clusterNodeIP is the address of the apiserver a cluster's kubeconfig
// names.
func clusterNodeIP(t *testing.T, kubeconfig string) string {
	b, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`server: https://([0-9.]+):`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no server address in %s:\n%s", kubeconfig, b)
	}
	return string(m[1])
}

// dialFrom opens a TCP connection to ip:6443 from the network namespace
// netns ("" for the host's).
func dialFrom(netns, ip string) error {
	if netns == "" {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "6443"), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	out, err := exec.Command("ip", "netns", "exec", netns, "timeout", "5", "bash", "-c", "exec 3<>/dev/tcp/"+ip+"/6443").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// snapshotHostState records what a cluster must not leave behind: the
// processes' command lines, mount points, links, iptables rules, network
// namespaces and skiff's cgroups of the memory hierarchy.
func snapshotHostState(t *testing.T) map[string][]string {
	t.Helper()
	state := map[string][]string{}
	// Skiff's processes and those of the clusters' helpers and pods; the
	// machine's other processes come and go on their own.
	for _, p := range nodetest.Procs(func(p nodetest.Proc) bool {
		return p.Exe == skiffBin || nodetest.Under(p.Exe, config.ClustersDir) || strings.Contains(p.Cgroup, ":/skiff_")
	}) {
		state["processes"] = append(state["processes"], fmt.Sprintf("%d %s", p.PID, p.Cmdline()))
	}
	state["mounts"] = nodetest.MountPoints()
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		state["links"] = append(state["links"], i.Name)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(save).Output()
		if err != nil {
			t.Fatalf("%s: %v", save, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			// Comments carry the time; counters change with traffic.
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			if strings.HasPrefix(line, ":") {
				line = strings.Fields(line)[0]
			}
			state["iptables"] = append(state["iptables"], line)
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		state["netns"] = append(state["netns"], e.Name())
	}
	// The cgroups a cluster makes: its nodes' roots (/skiff_<cluster>_<node>)
	// and the pods' under them. Other processes on the machine make and
	// remove cgroups of their own meanwhile.
	memory := filepath.Join(cgroups.FS, "memory")
	_ = filepath.WalkDir(memory, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(memory, p)
		if err == nil && d.IsDir() && (strings.HasPrefix(rel, "skiff_") || strings.Contains(rel, "kubepods")) {
			state["cgroups"] = append(state["cgroups"], p)
		}
		return nil
	})
	for k := range state {
		sort.Strings(state[k])
	}
	return state
}

// diffLines returns the lines only in before and those only in after.
func diffLines(before, after []string) (gone, added []string) {
	in := func(list []string) map[string]bool {
		m := map[string]bool{}
		for _, l := range list {
			m[l] = true
		}
		return m
	}
	b, a := in(before), in(after)
	for _, l := range before {
		if !a[l] {
			gone = append(gone, l)
		}
	}
	for _, l := range after {
		if !b[l] {
			added = append(added, l)
		}
	}
	return gone, added
}

// dumpClusterLogs logs the end of each node's log.
func dumpClusterLogs(t *testing.T, name string) {
	logs, _ := filepath.Glob(filepath.Join(config.ClustersDir, name, "nodes", "*", "skiff.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		t.Logf("%s:\n%s", l, tail(string(b), 8000))
	}
}
