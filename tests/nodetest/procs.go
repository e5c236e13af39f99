// Package nodetest runs skiff nodes on this host for the end-to-end tests
// and the node benchmark, and removes what they leave behind: it starts a
// node's process, finds a node's processes in /proc and kills them, and
// tears down the mounts, links, iptables rules and CNI state a node keeps
// after its process is gone. It reports through a Reporter (a
// *testing.T is one) and never through testing itself.
package nodetest

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-io/skiff/pkg/layout"
)

// Reporter receives what a cleanup did (Logf) and what it could not do
// (Errorf). *testing.T is one.
type Reporter interface {
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Proc is one process as /proc shows it.
type Proc struct {
	PID, PPID int
	// State is the state letter of /proc/PID/stat (Z: a zombie).
	State byte
	// Exe is the executable's path, without the " (deleted)" of a removed
	// file.
	Exe    string
	Argv   []string
	Cgroup string // the text of /proc/PID/cgroup
}

// Cmdline is the command line, arguments joined by spaces.
func (p Proc) Cmdline() string { return strings.Join(p.Argv, " ") }

// ListProcs reads every process of /proc, by PID.
func ListProcs() map[int]Proc {
	procs := map[int]Proc{}
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
		state, ppid, ok := parseStat(stat)
		if !ok {
			continue
		}
		p := Proc{PID: pid, PPID: ppid, State: state}
		if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
			p.Exe = strings.TrimSuffix(exe, " (deleted)")
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
			p.Argv = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
			p.Cgroup = string(b)
		}
		procs[pid] = p
	}
	return procs
}

// parseStat reads the state and the parent PID from the text of
// /proc/PID/stat: "pid (comm) state ppid ...", where comm may hold spaces
// and parentheses.
func parseStat(stat []byte) (state byte, ppid int, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 || fields[0] == "" {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(fields[1])
	return fields[0][0], ppid, true
}

// Alive says whether pid exists and is not a zombie.
func Alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	state, _, ok := parseStat(stat)
	return ok && state != 'Z'
}

// Under says whether path is dir or below it.
func Under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// IsShim says whether p is a containerd shim of a skiff node (they connect
// to layout.RunDir).
func (p Proc) IsShim() bool {
	name := filepath.Base(p.Exe)
	if len(p.Argv) > 0 {
		if a0 := filepath.Base(p.Argv[0]); strings.HasPrefix(a0, "containerd-shim") {
			name = a0
		}
	}
	return strings.HasPrefix(name, "containerd-shim") && strings.Contains(p.Cmdline(), layout.RunDir+"/")
}

// IsSkiff says whether p is a live process of a skiff binary with a
// command: a server, an agent, containerd or any other.
func (p Proc) IsSkiff() bool {
	return filepath.Base(p.Exe) == "skiff" && len(p.Argv) >= 2 && p.State != 'Z'
}

// IsNode says whether p is a skiff process that runs (part of) a node: an
// agent, a server without --disable-agent, or skiff's containerd.
func (p Proc) IsNode() bool {
	if !p.IsSkiff() {
		return false
	}
	if filepath.Base(p.Argv[0]) == "containerd" {
		return true
	}
	switch p.Argv[1] {
	case "containerd", "agent":
		return true
	case "server":
		return !p.HasArg("--disable-agent", "--disable-agent=true")
	}
	return false
}

// HasArg says whether one of p's arguments after the command is one of
// args.
func (p Proc) HasArg(args ...string) bool {
	if len(p.Argv) < 2 {
		return false
	}
	for _, a := range p.Argv[2:] {
		for _, want := range args {
			if a == want {
				return true
			}
		}
	}
	return false
}

// InCgroup says whether p is at or under cgroupRoot in some cgroup
// hierarchy.
func (p Proc) InCgroup(cgroupRoot string) bool {
	for _, line := range strings.Split(p.Cgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && Under(parts[2], cgroupRoot) {
			return true
		}
	}
	return false
}

// Procs returns the live processes that owns accepts and all their
// descendants, sorted by PID; never this process, its ancestors or init.
func Procs(owns func(Proc) bool) []Proc {
	return descendants(ListProcs(), os.Getpid(), owns)
}

// descendants is Procs on a given process table, protecting self and its
// ancestors.
func descendants(procs map[int]Proc, self int, owns func(Proc) bool) []Proc {
	protected := map[int]bool{1: true}
	for pid := self; pid > 1; {
		protected[pid] = true
		p, ok := procs[pid]
		if !ok {
			break
		}
		pid = p.PPID
	}
	ours := map[int]bool{}
	for pid, p := range procs {
		if owns(p) {
			ours[pid] = true
		}
	}
	// Descendants: repeat until no new process is added.
	for changed := true; changed; {
		changed = false
		for pid, p := range procs {
			if !ours[pid] && ours[p.PPID] {
				ours[pid] = true
				changed = true
			}
		}
	}
	var out []Proc
	for pid := range ours {
		if p := procs[pid]; !protected[pid] && p.State != 'Z' {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// Children returns the live children of the given processes, sorted by
// PID.
func Children(procs map[int]Proc, parents ...int) []Proc {
	want := map[int]bool{}
	for _, p := range parents {
		want[p] = true
	}
	var out []Proc
	for _, p := range procs {
		if want[p.PPID] && p.State != 'Z' {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// KillAll SIGKILLs the processes find returns until it returns none, for
// up to 30 seconds, and returns those that survived.
func KillAll(find func() []Proc) []Proc {
	var left []Proc
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		left = find()
		if len(left) == 0 {
			return nil
		}
		for _, p := range left {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return left
}
