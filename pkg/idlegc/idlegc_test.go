package idlegc

import (
	"testing"
	"time"
)

const mib = 1 << 20

// feed gives the tuner one sample per Interval at the given allocation
// rates (MiB per second) and returns the percentage and whether it changed
// after each.
func feed(t *Tuner, allocated *uint64, rates ...float64) (percents []int, changes []bool) {
	for _, r := range rates {
		*allocated += uint64(r * mib * Interval.Seconds())
		p, changed := t.Sample(*allocated)
		percents = append(percents, p)
		changes = append(changes, changed)
	}
	return percents, changes
}

func repeat(rate float64, n int) []float64 {
	rates := make([]float64, n)
	for i := range rates {
		rates[i] = rate
	}
	return rates
}

func TestIdleOnlyAfterAWholeQuietWindow(t *testing.T) {
	var tuner Tuner
	var allocated uint64
	span := int(Window / Interval)
	// The first sample only starts the count; span more fill the window.
	percents, _ := feed(&tuner, &allocated, repeat(1, span)...)
	for i, p := range percents {
		if p != StartPercent {
			t.Fatalf("not at the start-up percentage after %d samples, before a whole window: %v", i+1, percents)
		}
	}
	if p, changed := tuner.Sample(allocated + mib*uint64(Interval.Seconds())); p != IdlePercent || !changed {
		t.Fatalf("after a quiet window: %d (changed %v), want %d", p, changed, IdlePercent)
	}
}

func TestAShortBurstStaysIdleASustainedOneIsBusy(t *testing.T) {
	var tuner Tuner
	var allocated uint64
	span := int(Window / Interval)
	feed(&tuner, &allocated, repeat(1, span+1)...)
	if !tuner.Idle() {
		t.Fatal("not idle after a quiet window")
	}
	// One interval at 8 MiB/s among 1 MiB/s ones averages under 3 MiB/s.
	if percents, _ := feed(&tuner, &allocated, 8, 1); percents[0] != IdlePercent || percents[1] != IdlePercent {
		t.Fatalf("a 5 s burst made the process busy: %v", percents)
	}
	percents, changes := feed(&tuner, &allocated, 20, 20)
	if percents[0] != BusyPercent || !changes[0] || changes[1] {
		t.Fatalf("sustained allocation: %v %v, want busy at once and changed once", percents, changes)
	}
	// Busy until the burst has left the window.
	percents, _ = feed(&tuner, &allocated, repeat(1, span)...)
	if percents[span-3] != BusyPercent || percents[span-1] != IdlePercent {
		t.Fatalf("after the burst: %v, want busy while it is in the window and idle once it has left", percents)
	}
}

func TestStartUpRunsAtStartPercentEvenWhenBusy(t *testing.T) {
	var tuner Tuner
	var allocated uint64
	percents, changes := feed(&tuner, &allocated, repeat(50, 10)...)
	for i := range percents {
		if percents[i] != StartPercent || changes[i] {
			t.Fatalf("busy start-up: %v %v, want %d unchanged throughout", percents, changes, StartPercent)
		}
	}
}

func TestACounterGoingBackStartsAgain(t *testing.T) {
	var tuner Tuner
	var allocated uint64
	feed(&tuner, &allocated, repeat(1, int(Window/Interval)+1)...)
	if !tuner.Idle() {
		t.Fatal("not idle after a quiet window")
	}
	if p, changed := tuner.Sample(0); p != IdlePercent || changed {
		t.Errorf("after the count went back: %d, changed %v; want unchanged", p, changed)
	}
	if len(tuner.counts) != 1 {
		t.Errorf("the samples before the count went back are kept: %v", tuner.counts)
	}
}

func TestAUserSetGOGCIsLeftAlone(t *testing.T) {
	t.Setenv("GOGC", "300")
	done := make(chan struct{})
	go func() {
		Run(t.Context(), func(change string) { t.Errorf("changed with GOGC set: %s", change) })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * Interval):
		t.Fatal("Run kept tuning although GOGC is set")
	}
}
