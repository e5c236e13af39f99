// Package startpages gives back, once a program has started, the memory
// that only its start-up used: the mapped pages of its own executable and
// the free heap.
//
// A Go program on the Kubernetes libraries runs, before and while it
// starts, the init functions and start-up code of hundreds of packages,
// spread over its whole executable. The pages it touches stay mapped (and,
// with the kernel's fault-around, their 64 KiB neighbourhoods too) although
// an idle program never runs that code again: docs/benchmarks.md has the
// figures. Release drops the program's mappings of the read-only parts of
// its executable (code, read-only data, the function tables) with
// MADV_DONTNEED and asks the page cache to drop those pages of the file
// that no process maps any more. They are clean pages of a file: nothing is
// lost, and whatever the program still runs reads its pages back on first
// use. Writable segments are never touched: MADV_DONTNEED would discard
// their contents. It is meant to run once, when start-up is over: a busy
// program keeps what its work touches, so this is no periodic trimming.
//
// The package is its own module with no dependency, so that the add-ons
// built from their own modules (CoreDNS, local-path-provisioner,
// metrics-server) link the same code as skiff.
package startpages

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Released is what one Release gave back.
type Released struct {
	// Executable is the program's file.
	Executable string
	// Unmapped is the address space of the read-only mappings dropped; the
	// resident part of it is what the program gave back.
	Unmapped uintptr
	// Heap is the free heap returned to the kernel.
	Heap uint64
}

func (r Released) String() string {
	return fmt.Sprintf("unmapped the start-up pages of %s's read-only segments (%d MiB of address space) and returned %d MiB of free heap", r.Executable, r.Unmapped>>20, r.Heap>>20)
}

// writeBackWait is how long the second page cache drop waits for the
// write-back the first one started: a node writes an executable (an
// image's layer, the helpers) shortly before it runs, and dirty pages are
// not dropped.
const writeBackWait = 2 * time.Second

// Release gives back the start-up pages of the running program.
func Release() (Released, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return Released{}, fmt.Errorf("find the running executable: %w", err)
	}
	r := Released{Executable: exe}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return r, fmt.Errorf("read the process's mappings: %w", err)
	}
	defer maps.Close()
	lines := bufio.NewScanner(maps)
	for lines.Scan() {
		start, end, ok := readOnlyMapping(lines.Text(), exe)
		if !ok {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, start, end-start, syscall.MADV_DONTNEED); errno == 0 {
			r.Unmapped += end - start
		}
		// From now on a fault reads the page it needs, not those around it
		// too (code is still read in 64 KiB folios: the kernel's choice).
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, start, end-start, syscall.MADV_RANDOM)
	}
	if err := lines.Err(); err != nil {
		return r, fmt.Errorf("read the process's mappings: %w", err)
	}
	// Pages still cached would be mapped again 64 KiB around each later
	// fault: the page cache drops those no process maps any more.
	if f, err := os.Open(exe); err == nil {
		for i := 0; i < 2; i++ {
			if i > 0 {
				time.Sleep(writeBackWait)
			}
			_, _, _ = syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, 4 /* POSIX_FADV_DONTNEED */, 0, 0)
		}
		f.Close()
	}
	// The runtime returns free heap to the kernel only slowly and never
	// below its goal; start-up's garbage is collected and given back now.
	before := heapReleased()
	debug.FreeOSMemory()
	if after := heapReleased(); after > before {
		r.Heap = after - before
	}
	return r, nil
}

// heapReleased is the heap memory the runtime holds no pages for.
func heapReleased() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// readOnlyMapping parses a line of /proc/self/maps and says whether it is
// a private, read-only mapping of exe, and where.
func readOnlyMapping(line, exe string) (start, end uintptr, ok bool) {
	// address perms offset dev inode pathname
	f := strings.Fields(line)
	if len(f) < 6 || strings.Join(f[5:], " ") != exe || len(f[1]) != 4 || f[1][1] != '-' || f[1][3] != 'p' {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}

// After runs Release once delay has passed, unless ctx ends first, and
// reports what it gave back (or why it could not) to report.
func After(ctx context.Context, delay time.Duration, report func(Released, error)) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	r, err := Release()
	report(r, err)
}

// AddonDelay is when an add-on's start-up is taken to be over: the add-ons
// serve and have synced their informers a few seconds after they start,
// and metrics-server has scraped its nodes once or twice (every 15 s).
const AddonDelay = 30 * time.Second

// ReleaseLater runs Release AddonDelay from now, in the background, and
// reports on standard error: for the programs of the system images.
func ReleaseLater() {
	go After(context.Background(), AddonDelay, func(r Released, err error) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "skiff: release the start-up pages: %v\n", err)
			return
		}
		fmt.Fprintf(os.Stderr, "skiff: %v, %v after start\n", r, AddonDelay)
	})
}
