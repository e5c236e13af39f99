package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/skiff-io/skiff/tests/nodetest"
)

// Mem is one memory reading of the node, in KiB. RSS counts the pages of
// the skiff binary that the node and its containerd both map (the same
// executable) once in each; PSS splits every shared page among the
// processes mapping it, so the PSS total counts each page once.
type Mem struct {
	SkiffKiB          int64 `json:"skiff_kib"`
	SkiffPSSKiB       int64 `json:"skiff_pss_kib"`
	SkiffAnonKiB      int64 `json:"skiff_anon_kib"`
	ContainerdKiB     int64 `json:"containerd_kib"`
	ContainerdPSSKiB  int64 `json:"containerd_pss_kib"`
	ContainerdAnonKiB int64 `json:"containerd_anon_kib"`
	ShimsKiB          int64 `json:"shims_kib"`
	ShimsPSSKiB       int64 `json:"shims_pss_kib"`
	Shims             int   `json:"shims"`
	TotalKiB          int64 `json:"total_kib"`
	TotalPSSKiB       int64 `json:"total_pss_kib"`
	// ContainersKiB is the RSS of the processes under the shims (each
	// pod's sandbox and container processes), not in the total.
	ContainersKiB      int64 `json:"containers_kib"`
	ContainersPSSKiB   int64 `json:"containers_pss_kib"`
	ContainerProcesses int   `json:"container_processes"`
	// ControlPlaneKiB is the RSS of the control plane an agent joined,
	// not in the total; null for a server.
	ControlPlaneKiB *int64 `json:"control_plane_kib"`
}

// readMem reads the memory of the node process, its containerd child (0:
// none), the shims and the processes under them, and the control plane
// (0: none).
func readMem(node, containerd int, shims []int, cp int) Mem {
	var m Mem
	m.SkiffKiB = sumKiB("status", "VmRSS", node)
	m.SkiffPSSKiB = sumKiB("smaps_rollup", "Pss", node)
	m.SkiffAnonKiB = sumKiB("smaps_rollup", "Anonymous", node)
	if containerd != 0 {
		m.ContainerdKiB = sumKiB("status", "VmRSS", containerd)
		m.ContainerdPSSKiB = sumKiB("smaps_rollup", "Pss", containerd)
		m.ContainerdAnonKiB = sumKiB("smaps_rollup", "Anonymous", containerd)
	}
	m.Shims = len(shims)
	m.ShimsKiB = sumKiB("status", "VmRSS", shims...)
	m.ShimsPSSKiB = sumKiB("smaps_rollup", "Pss", shims...)
	var conts []int
	for _, p := range nodetest.Children(nodetest.ListProcs(), shims...) {
		conts = append(conts, p.PID)
	}
	m.ContainerProcesses = len(conts)
	m.ContainersKiB = sumKiB("status", "VmRSS", conts...)
	m.ContainersPSSKiB = sumKiB("smaps_rollup", "Pss", conts...)
	m.TotalKiB = m.SkiffKiB + m.ContainerdKiB + m.ShimsKiB
	m.TotalPSSKiB = m.SkiffPSSKiB + m.ContainerdPSSKiB + m.ShimsPSSKiB
	if cp != 0 {
		if kib := sumKiB("status", "VmRSS", cp); kib > 0 {
			m.ControlPlaneKiB = &kib
		}
	}
	return m
}

// String is the reading as the log shows it, in MiB.
func (m Mem) String() string {
	name := "skiff"
	if m.ControlPlaneKiB != nil {
		name = "agent"
	}
	s := fmt.Sprintf("%s %d MiB (PSS %d), containerd %d MiB (PSS %d), %d shims %d MiB (PSS %d), total %d MiB (PSS %d)",
		name, m.SkiffKiB/1024, m.SkiffPSSKiB/1024, m.ContainerdKiB/1024, m.ContainerdPSSKiB/1024,
		m.Shims, m.ShimsKiB/1024, m.ShimsPSSKiB/1024, m.TotalKiB/1024, m.TotalPSSKiB/1024)
	if m.ControlPlaneKiB != nil {
		s += fmt.Sprintf("; the control plane %d MiB", *m.ControlPlaneKiB/1024)
	}
	return s
}

// sumKiB sums a "Field: N kB" line of /proc/PID/<file> over the
// processes; a process that is gone counts 0.
func sumKiB(file, field string, pids ...int) int64 {
	var total int64
	for _, pid := range pids {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), file))
		if err != nil {
			continue
		}
		total += fieldKiB(bufio.NewScanner(f), field)
		f.Close()
	}
	return total
}

// fieldKiB returns the number of the first line whose first word is
// field + ":" (as in /proc/PID/status and smaps_rollup), or 0.
func fieldKiB(sc *bufio.Scanner, field string) int64 {
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// diskKiB is what `du -sk path` prints: the disk usage of path and
// everything under it, each hard-linked file counted once, in KiB.
func diskKiB(path string) int64 {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	var bytes int64
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil {
			return nil
		}
		k := key{uint64(st.Dev), st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		bytes += st.Blocks * 512
		return nil
	})
	return (bytes + 1023) / 1024
}

// memTotalKiB is MemTotal of /proc/meminfo.
func memTotalKiB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	return fieldKiB(bufio.NewScanner(f), "MemTotal")
}

// loadAverage is the 1, 5 and 15 minute load averages of /proc/loadavg.
func loadAverage() []string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return []string{"0", "0", "0"}
	}
	return f[:3]
}
