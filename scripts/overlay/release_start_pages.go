//go:build skiff_addon

// This file is no part of skiff's own packages: scripts/build-helpers
// copies it into a copy of the upstream add-on modules it builds
// (local-path-provisioner, metrics-server), beside their main package,
// which a main of ours cannot import (and the go command allows no
// -overlay into the module cache). The build tag keeps it out of every
// other build.
//
// Why: a Go program on the Kubernetes libraries runs, before and while it
// starts, the init functions and start-up code of hundreds of packages,
// spread over its whole executable. The pages it touches then stay mapped
// (and, with the kernel's fault-around, so do their 64 KiB neighbourhoods)
// although an idle add-on never runs that code again: on a node, three
// quarters of their code stayed mapped and a tenth of it was used when idle
// (docs/benchmarks.md, "Bundled add-ons", has the figures).
//
// What: once start-up is over, the program drops its mappings of the
// read-only parts of its own executable (code, read-only data, the function
// tables) with MADV_DONTNEED, and asks the page cache to drop those pages
// of the file that no process maps any more. They are clean pages of a
// file: nothing is lost, and whatever the program still runs reads its
// pages back on first use (a fault, from the disk once). The writable data
// segments are never touched: MADV_DONTNEED would discard their contents.
// Last, a garbage collection returns the start-up's free heap pages. It
// runs once: a program that is busy keeps what its work touches, so this
// is no periodic trimming, and the page cache is no worse off (only this
// program maps its file).
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startPagesDelay is when start-up is taken to be over: the add-ons are
// serving and have synced their informers a few seconds after they start,
// and metrics-server has scraped its nodes once or twice (every 15 s).
const startPagesDelay = 30 * time.Second

func init() { go releaseStartPages() }

func releaseStartPages() {
	time.Sleep(startPagesDelay)
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer maps.Close()
	var released uintptr
	lines := bufio.NewScanner(maps)
	for lines.Scan() {
		// address perms offset dev inode pathname
		f := strings.Fields(lines.Text())
		if len(f) < 6 || f[5] != exe || f[1][1] != '-' || f[1][3] != 'p' {
			continue // not a private, read-only mapping of the executable
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); errno == 0 {
			released += uintptr(end - start)
		}
		// From now on a fault reads the page it needs, not those around it
		// too (code is still read in 64 KiB folios: the kernel's choice).
		syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_RANDOM)
	}
	// The page cache drops the executable's pages no process maps any
	// more; otherwise each later fault would map the cached 64 KiB around
	// the page it needs again (the kernel's fault-around).
	// The node unpacked the image shortly before: pages not yet written
	// back are not dropped, the first call starts their write-back and the
	// second, once it is done, drops them.
	if f, err := os.Open(exe); err == nil {
		for i := 0; i < 2; i++ {
			if i > 0 {
				time.Sleep(2 * time.Second)
			}
			syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, 4 /* POSIX_FADV_DONTNEED */, 0, 0)
		}
		f.Close()
	}
	// The heap, too, is larger after start-up than the idle program needs:
	// its garbage is collected and the free pages go back to the kernel,
	// which the runtime otherwise does only slowly and not below its goal.
	debug.FreeOSMemory()
	fmt.Fprintf(os.Stderr, "skiff: unmapped the start-up pages of %s's read-only segments (%d MiB of address space) %s after start\n", exe, released>>20, startPagesDelay)
}
