package supervisor

import (
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// The join endpoints are reachable by anyone who can reach the port. A
// source that keeps presenting bad tokens is slowed down to one guess a
// second, and refusals are logged as a count once a minute, so a flood
// neither brute-forces a token nor fills the log.
const (
	// failureBurst bad attempts are answered at once; then one more every
	// failureRefill.
	failureBurst  = 10
	failureRefill = time.Second
	// logWindow is how often refusals are summed up in one line.
	logWindow = time.Minute
	// firstRefusalLines is how many refusals a window logs as they happen
	// (each from another source), so a single mistake shows at once.
	firstRefusalLines = 5
	// summarySources is how many sources the summary names.
	summarySources = 5
	// maxSources bounds the memory a flood from many addresses can take;
	// beyond it, new sources share one bucket.
	maxSources = 4096
)

// overflowSource stands for every source beyond maxSources.
const overflowSource = "other addresses"

// guard throttles and logs refused join requests per source address.
type guard struct {
	now func() time.Time

	mu      sync.Mutex
	sources map[string]*sourceState
	// windowStart and logged are the current log window's start and how
	// many refusals it logged as they happened.
	windowStart time.Time
	logged      int
	// flushing is set once the goroutine writing the summaries runs.
	flushing bool
}

type sourceState struct {
	// credit is how many bad attempts the source may make right now.
	credit  float64
	updated time.Time
	// refused and throttled count what this window has not yet logged;
	// logged tells whether the source's first refusal of the window was.
	refused, throttled int
	logged             bool
}

func newGuard(now func() time.Time) *guard {
	return &guard{now: now, sources: map[string]*sourceState{}, windowStart: now()}
}

// sourceOf is the address a request counts against: the client's IP, or
// for IPv6 its /64, which one host usually owns whole.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
	return ip.String()
}

// state returns the source's record, refilled to now; callers hold mu.
func (g *guard) state(src string) *sourceState {
	now := g.now()
	st, ok := g.sources[src]
	if !ok {
		if len(g.sources) >= maxSources {
			g.forgetIdle(now)
		}
		if len(g.sources) >= maxSources {
			src = overflowSource
			st = g.sources[src]
		}
		if st == nil {
			st = &sourceState{credit: failureBurst, updated: now}
			g.sources[src] = st
		}
	}
	st.credit = min(failureBurst, st.credit+float64(now.Sub(st.updated))/float64(failureRefill))
	st.updated = now
	return st
}

// forgetIdle drops sources that are back to full credit with nothing left
// to log.
func (g *guard) forgetIdle(now time.Time) {
	for src, st := range g.sources {
		refilled := st.credit+float64(now.Sub(st.updated))/float64(failureRefill) >= failureBurst
		if refilled && st.refused == 0 && st.throttled == 0 {
			delete(g.sources, src)
		}
	}
}

// allow reports whether a request from src may have its token checked, and
// if not, how long until it may.
func (g *guard) allow(src string) (bool, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.state(src)
	if st.credit >= 1 {
		return true, 0
	}
	st.throttled++
	return false, time.Duration((1 - st.credit) * float64(failureRefill))
}

// refuse records a bad or missing token from src. The first refusals of a
// window are logged at once, one per source; the rest go to its summary.
func (g *guard) refuse(src, path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.startFlushing()
	st := g.state(src)
	st.credit = max(0, st.credit-1)
	if !st.logged && g.logged < firstRefusalLines {
		st.logged = true
		g.logged++
		logrus.Warnf("refused join request for %s from %s: bad or missing token (further refusals are counted once a minute)", path, src)
		return
	}
	st.refused++
}

// startFlushing starts the goroutine that writes the summaries; callers
// hold mu. It lives as long as the process, as the endpoints do.
func (g *guard) startFlushing() {
	if g.flushing {
		return
	}
	g.flushing = true
	go func() {
		for range time.Tick(logWindow / 4) {
			g.flush()
		}
	}()
}

// flush ends a window that is a minute old: one line sums up its refusals
// not yet logged, naming the sources with the most.
func (g *guard) flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if now.Sub(g.windowStart) < logWindow {
		return
	}
	type count struct {
		src             string
		total, throttle int
	}
	var counts []count
	total, throttled := 0, 0
	for src, st := range g.sources {
		if n := st.refused + st.throttled; n > 0 {
			counts = append(counts, count{src, n, st.throttled})
			total += n
			throttled += st.throttled
		}
		st.refused, st.throttled, st.logged = 0, 0, false
	}
	g.windowStart, g.logged = now, 0
	if total == 0 {
		return
	}
	sort.Slice(counts, func(a, b int) bool {
		if counts[a].total != counts[b].total {
			return counts[a].total > counts[b].total
		}
		return counts[a].src < counts[b].src
	})
	var named []string
	for _, c := range counts[:min(len(counts), summarySources)] {
		named = append(named, fmt.Sprintf("%s (%d)", c.src, c.total))
	}
	if more := len(counts) - len(named); more > 0 {
		named = append(named, fmt.Sprintf("%d more addresses", more))
	}
	logrus.Warnf("refused %d join requests in the last minute, bad or missing token, %d of them throttled unchecked: from %s", total, throttled, strings.Join(named, ", "))
}
