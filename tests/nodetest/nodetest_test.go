package nodetest

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestParseStatTakesTheFieldsAfterTheLastParenthesis(t *testing.T) {
	for _, tc := range []struct {
		stat  string
		state byte
		ppid  int
		ok    bool
	}{
		{"42 (skiff) S 1 42 42 0 -1", 'S', 1, true},
		{"7 (a) b (c) Z 3 7", 'Z', 3, true},
		{"9 (containerd-shim-runc-v2) R 4711 9", 'R', 4711, true},
		{"broken", 0, 0, false},
		{"5 (x) S", 0, 0, false},
	} {
		state, ppid, ok := parseStat([]byte(tc.stat))
		if state != tc.state || ppid != tc.ppid || ok != tc.ok {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d, %v", tc.stat, state, ppid, ok, tc.state, tc.ppid, tc.ok)
		}
	}
}

func TestParseMountinfoDecodesEscapedMountPoints(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
95 22 0:45 / /tmp/bench-node.x/run-1/kubelet/pods/a\040b rw shared:50 - tmpfs tmpfs rw
96 22 0:46 / /run/skiff/with\134backslash rw - tmpfs tmpfs rw
short line
`
	got := parseMountinfo(strings.NewReader(info))
	want := []string{"/", "/tmp/bench-node.x/run-1/kubelet/pods/a b", `/run/skiff/with\backslash`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseMountinfo = %q, want %q", got, want)
	}
}

func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		path, dir string
		want      bool
	}{
		{"/run/skiff", "/run/skiff", true},
		{"/run/skiff/containerd", "/run/skiff", true},
		{"/run/skiff/containerd", "/run/skiff/", true},
		{"/run/skiffy", "/run/skiff", false},
		{"/run", "/run/skiff", false},
	} {
		if got := Under(tc.path, tc.dir); got != tc.want {
			t.Errorf("Under(%q, %q) = %v", tc.path, tc.dir, got)
		}
	}
}

func TestOwnsPodCgroupForBothCgroupDrivers(t *testing.T) {
	uid := "0f5c3c9e-4b1a-4d1e-9a0b-6f3c2d1e0a9b"
	sc := Scope{PodUIDs: map[string]bool{uid: true}}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"pod" + uid, true},
		{"kubepods-besteffort-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice", true},
		{"pod0f5c3c9e-4b1a-4d1e-9a0b-000000000000", false}, // another pod
		{"kubepods", false},
		{"podnot-a-uid", false},
	} {
		if got := sc.OwnsPodCgroup(tc.name); got != tc.want {
			t.Errorf("OwnsPodCgroup(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if !(Scope{AllKubepods: true}).OwnsPodCgroup("pod0f5c3c9e-4b1a-4d1e-9a0b-000000000000") {
		t.Error("with AllKubepods every pod's cgroup belongs to the scope")
	}
}

func TestProcKinds(t *testing.T) {
	for _, tc := range []struct {
		p          Proc
		node, shim bool
	}{
		{Proc{Exe: "/tmp/w/bin/skiff", Argv: []string{"/tmp/w/bin/skiff", "server", "--data-dir", "/d"}}, true, false},
		{Proc{Exe: "/tmp/w/bin/skiff", Argv: []string{"skiff", "server", "--disable-agent"}}, false, false},
		{Proc{Exe: "/usr/bin/skiff", Argv: []string{"skiff", "agent"}}, true, false},
		{Proc{Exe: "/usr/bin/skiff", Argv: []string{"containerd", "--config", "x"}}, true, false},
		{Proc{Exe: "/usr/bin/skiff", Argv: []string{"skiff", "containerd"}, State: 'Z'}, false, false},
		{Proc{Exe: "/usr/bin/skiff", Argv: []string{"skiff", "kubectl", "get", "nodes"}}, false, false},
		{Proc{Exe: "/d/data/abc/bin/containerd-shim-runc-v2", Argv: []string{"/d/data/abc/bin/containerd-shim-runc-v2", "-address", "/run/skiff/containerd/containerd.sock"}}, false, true},
		{Proc{Exe: "/usr/bin/containerd-shim-runc-v2", Argv: []string{"containerd-shim-runc-v2", "-address", "/run/containerd/containerd.sock"}}, false, false},
	} {
		if got := tc.p.IsNode(); got != tc.node {
			t.Errorf("%v IsNode = %v", tc.p.Argv, got)
		}
		if got := tc.p.IsShim(); got != tc.shim {
			t.Errorf("%v IsShim = %v", tc.p.Argv, got)
		}
	}
}

func TestInCgroup(t *testing.T) {
	p := Proc{Cgroup: "12:cpu,cpuacct:/skt-agent/kubepods/pod1\n0::/skt-agent/kubepods/pod1/abc\n"}
	if !p.InCgroup("/skt-agent") || p.InCgroup("/skt-agen") || p.InCgroup("/other") {
		t.Errorf("InCgroup on %q", p.Cgroup)
	}
}

func TestDescendantsProtectThisProcessAndItsAncestors(t *testing.T) {
	procs := map[int]Proc{
		1:  {PID: 1},
		10: {PID: 10, PPID: 1, Exe: "/work/bin/skiff"}, // owned
		11: {PID: 11, PPID: 10},                        // child
		12: {PID: 12, PPID: 11},                        // grandchild
		13: {PID: 13, PPID: 11, State: 'Z'},            // zombie
		20: {PID: 20, PPID: 1},                         // unrelated
		30: {PID: 30, PPID: 10, Exe: "/usr/bin/go"},    // "self", under the owned one
	}
	owns := func(p Proc) bool { return strings.HasPrefix(p.Exe, "/work/") }
	var got []int
	for _, p := range descendants(procs, 30, owns) {
		got = append(got, p.PID)
	}
	if want := []int{11, 12}; !reflect.DeepEqual(got, want) {
		t.Fatalf("descendants = %v, want %v", got, want)
	}
}

func TestExitStatusIsTheShellsFigure(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "exit 3")
	_ = cmd.Run()
	if got := ExitStatus(cmd.ProcessState); got != 3 {
		t.Errorf("exit 3: ExitStatus = %d", got)
	}
	cmd = exec.Command("/bin/sh", "-c", "kill -KILL $$")
	_ = cmd.Run()
	if got := ExitStatus(cmd.ProcessState); got != 137 {
		t.Errorf("SIGKILL: ExitStatus = %d, want 137", got)
	}
}

func TestStartLoggedAppendsAfterAHeader(t *testing.T) {
	log := t.TempDir() + "/x.log"
	if err := os.WriteFile(log, []byte("earlier\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "echo hello")
	exited, start, err := StartLogged(cmd, log, "sh hello")
	if err != nil {
		t.Fatal(err)
	}
	<-exited
	b, _ := os.ReadFile(log)
	if start != len("earlier\n") || string(b[start:]) != "\n===== sh hello\nhello\n" {
		t.Fatalf("log %q, this run from %d", b, start)
	}
}
