package cluster

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlanNodesFromCounts(t *testing.T) {
	nodes, err := planNodes("ci", 3, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Role+":"+n.Name)
	}
	want := []string{"server:ci-server-1", "server:ci-server-2", "server:ci-server-3", "agent:ci-agent-1", "agent:ci-agent-2"}
	if !slices.Equal(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
	if _, err := planNodes("ci", 0, 2, nil); err == nil {
		t.Error("a cluster without a server was accepted")
	}
}

func TestClusterFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "cluster.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f, err := readFile(write(`nodes:
  - role: agent
    name: worker
    labels: {b: "2", a: "1"}
    taints: ["dedicated=ci:NoSchedule"]
  - role: server
    args: ["--kubelet-arg=max-pods=50"]
`))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := planNodes("x", 0, 0, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Name != "x-server-1" || nodes[1].Name != "worker" {
		t.Fatalf("nodes %+v: want the server first, then worker", nodes)
	}
	if !slices.Equal(nodes[1].Labels, []string{"a=1", "b=2"}) || !slices.Equal(nodes[1].Taints, []string{"dedicated=ci:NoSchedule"}) {
		t.Errorf("worker's labels %v, taints %v", nodes[1].Labels, nodes[1].Taints)
	}
	if !slices.Equal(nodes[0].Args, []string{"--kubelet-arg=max-pods=50"}) {
		t.Errorf("server's args %v", nodes[0].Args)
	}

	for body, wantErr := range map[string]string{
		"nodes:\n  - role: server\n    labes: {a: b}\n": `unknown field "labes"`,
		"nodes:\n  - role: master\n":                    `role "master"`,
		"nodes: []\n":                                   "lists no nodes",
		"nodes:\n  - role: agent\n":                     "at least one server",
		"nodes:\n  - {role: server, name: a}\n  - {role: agent, name: a}\n": "two nodes are named a",
		"nodes:\n  - {role: server, name: A_1}\n":                           "not valid",
	} {
		f, err := readFile(write(body))
		if err == nil {
			_, err = planNodes("x", 0, 0, f)
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("cluster file %q: error %v, want one containing %q", body, err, wantErr)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "ci", "dev-1", strings.Repeat("a", maxNameLen)} {
		if err := validName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "A", "a_b", "a.b", "../x", strings.Repeat("a", maxNameLen+1)} {
		if err := validName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestArgv(t *testing.T) {
	c := &Cluster{Name: "ha", Binary: "/bin/skiff", Nodes: []Node{
		{Name: "ha-server-1", Role: RoleServer, IP: "10.100.1.2"},
		{Name: "ha-server-2", Role: RoleServer, IP: "10.100.1.3"},
		{Name: "ha-agent-1", Role: RoleAgent, IP: "10.100.1.4", Labels: []string{"a=b"}},
	}}
	s1, s2, a1 := &c.Nodes[0], &c.Nodes[1], &c.Nodes[2]
	first := strings.Join(c.argv(s1, nil), " ")
	for _, want := range []string{"/bin/skiff server ", "--cluster-init", "--token-file " + c.tokenPath(), "--node-ip 10.100.1.2", "--kubelet-arg=cgroup-root=/skiff_ha_ha-server-1"} {
		if !strings.Contains(first, want) {
			t.Errorf("first server's command line %q lacks %q", first, want)
		}
	}
	joiner := strings.Join(c.argv(s2, c.joinArgs("https://10.100.1.2:6443", s1, RoleServer)), " ")
	if strings.Contains(joiner, "--cluster-init") || !strings.Contains(joiner, "--server https://10.100.1.2:6443 --token-file "+c.paths(s1).Server.TokenFile) {
		t.Errorf("joining server's command line %q: want --server and the first server's token, no --cluster-init", joiner)
	}
	agent := strings.Join(c.argv(a1, c.joinArgs("https://10.100.1.2:6443", s1, RoleAgent)), " ")
	if !strings.HasPrefix(agent, "/bin/skiff agent ") || !strings.Contains(agent, "--token-file "+c.paths(s1).Server.AgentTokenFile) ||
		!strings.Contains(agent, "--node-label a=b") || strings.Contains(agent, "--write-kubeconfig") {
		t.Errorf("agent's command line %q: want the agent token, its label, no kubeconfig", agent)
	}

	c.ServerArgs = []string{"--datastore-endpoint=postgres://db/skiff"}
	if first := strings.Join(c.argv(s1, nil), " "); strings.Contains(first, "--cluster-init") {
		t.Errorf("with a shared datastore, the first server still gets --cluster-init: %q", first)
	}
	if joiner := strings.Join(c.argv(s2, c.joinArgs("https://10.100.1.2:6443", s1, RoleServer)), " "); strings.Contains(joiner, "--server ") ||
		!strings.Contains(joiner, "--token-file "+c.tokenPath()) {
		t.Errorf("with a shared datastore, a second server's command line is %q: want the shared token and no --server", joiner)
	}
}

func TestNodeIPs(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("10.100.7.0/24")
	if got := nodeIP(subnet, -1); got != "10.100.7.1" {
		t.Errorf("gateway %s", got)
	}
	if got := nodeIP(subnet, 0); got != "10.100.7.2" {
		t.Errorf("first node %s", got)
	}
}

func TestUnder(t *testing.T) {
	if !under("/var/lib/skiff/x", "/var/lib/skiff") || under("/var/lib/skiffx", "/var/lib/skiff") || !under("/run/skiff", "/run/skiff/") {
		t.Error("under")
	}
}

// A node that exits while the command that launched it still runs is a
// zombie of that command: it must not count as running, or `skiff cluster
// start` would wait on a dead node until its timeout.
func TestExitedNodeIsNotRunningWhileAZombie(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	defer func() {
		if !reaped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	n := &Node{PID: cmd.Process.Pid}
	_, n.StartTime, _ = procStat(n.PID)
	if !n.running() {
		t.Fatal("a live process is not running")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.running() {
		if time.Now().After(deadline) {
			t.Fatal("a killed, unreaped process still counts as running")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if state, _, err := procStat(n.PID); err != nil || state != 'Z' {
		t.Fatalf("the killed process is in state %q (%v), want a zombie", state, err)
	}
	_ = cmd.Wait()
	reaped = true
}
