// Package idlegc lets a long-running Go process hold less heap while it is
// idle, by running the garbage collector more often while that is cheap.
//
// The collector's default (GOGC=100) lets the heap grow to twice what is
// live before it collects again. For an idle node that doubling is most of
// the process's memory: the live heap is the caches of the API server,
// the controllers and the kubelet, and little is allocated besides. At a
// percentage P the collector marks the live heap once per P % of it
// allocated, so the marking it does per second is the allocation rate
// times 100/P, whatever the heap's size: cheap while little is allocated,
// and a multiple of the default's work while the process is busy (pods
// being created, an upgrade). So the percentage is IdlePercent while the
// allocation rate, averaged over Window, is under IdleAllocRate, and Go's
// default otherwise.
//
// Start-up is the exception: until the process is first idle it runs at
// StartPercent. Go never moves a live object, so the spans start-up
// leaves partly filled stay in use for good, and a heap allowed to double
// while the API server builds its caches and documents is left, once
// idle, with tens of MiB more of them (docs/benchmarks.md has the
// figures).
package idlegc

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

const (
	// IdlePercent is the collector's percentage while the process is idle.
	IdlePercent = 20
	// BusyPercent is the collector's percentage while the process is busy
	// after its start-up: Go's default.
	BusyPercent = 100
	// StartPercent is the collector's percentage until the process is
	// first idle.
	StartPercent = 50
	// IdleAllocRate is the allocation rate, in bytes a second, under which
	// the process is idle: at IdlePercent the collector then marks at most
	// 15 MiB a second, a small fraction of one core.
	IdleAllocRate = 3 << 20
	// Window is the time the allocation rate is averaged over, so that the
	// short bursts of an idle cluster's periodic work (resyncs, leases,
	// probes) do not count as busy.
	Window = 30 * time.Second
	// Interval is how often the allocation count is sampled.
	Interval = 5 * time.Second
)

// Tuner decides the collector's percentage from samples of the cumulative
// allocation count taken every Interval; Run feeds it. The zero value is
// starting.
type Tuner struct {
	idle bool
	// started is set once the process has been idle.
	started bool
	// counts holds the last samples, oldest first, spanning up to Window.
	counts []uint64
}

// Sample takes the cumulative bytes allocated, read Interval after the
// previous sample, and returns the percentage to use and whether it
// changed. The process goes idle once a whole Window of samples has been
// averaged under IdleAllocRate, and busy again as soon as the average is
// over it.
func (t *Tuner) Sample(allocated uint64) (percent int, changed bool) {
	if n := len(t.counts); n > 0 && allocated < t.counts[n-1] {
		t.counts = t.counts[:0]
	}
	t.counts = append(t.counts, allocated)
	if span := int(Window / Interval); len(t.counts) > span+1 {
		t.counts = t.counts[len(t.counts)-span-1:]
	}
	was := t.idle
	if n := len(t.counts); n > 1 {
		elapsed := time.Duration(n-1) * Interval
		rate := float64(t.counts[n-1]-t.counts[0]) / elapsed.Seconds()
		switch {
		case rate >= IdleAllocRate:
			t.idle = false
		case elapsed >= Window:
			t.idle, t.started = true, true
		}
	}
	return t.percent(), t.idle != was
}

func (t *Tuner) percent() int {
	switch {
	case t.idle:
		return IdlePercent
	case t.started:
		return BusyPercent
	}
	return StartPercent
}

// Idle reports whether the last samples found the process idle.
func (t *Tuner) Idle() bool { return t.idle }

// Run tunes the collector of this process, from StartPercent, until ctx
// ends. It does nothing when the GOGC environment variable is set: the
// user's choice stands. report, if not nil, is told of every change. On
// going idle the heap the busy period left free is returned to the kernel
// at once.
func Run(ctx context.Context, report func(string)) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(StartPercent)
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	var tuner Tuner
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			metrics.Read(samples)
			if samples[0].Value.Kind() != metrics.KindUint64 {
				return
			}
			percent, changed := tuner.Sample(samples[0].Value.Uint64())
			if !changed {
				continue
			}
			debug.SetGCPercent(percent)
			if tuner.Idle() {
				debug.FreeOSMemory()
			}
			if report != nil {
				report(fmt.Sprintf("garbage collector at GOGC=%d: the process is %s", percent, map[bool]string{true: "idle", false: "busy"}[tuner.Idle()]))
			}
		}
	}
}
