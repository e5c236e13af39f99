package supervisor

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeClock is a settable time source for the guard.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestGuardThrottlesBadTokensPerSource(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	g := newGuard(clock.Now)
	g.flushing = true // the test flushes by hand

	for i := range failureBurst {
		if ok, _ := g.allow("192.0.2.1"); !ok {
			t.Fatalf("attempt %d throttled within the burst", i+1)
		}
		g.refuse("192.0.2.1", "/v1-skiff/config")
	}
	ok, wait := g.allow("192.0.2.1")
	if ok || wait <= 0 || wait > failureRefill {
		t.Fatalf("after the burst: allowed %v, wait %s; want throttled for at most %s", ok, wait, failureRefill)
	}
	if ok, _ := g.allow("192.0.2.2"); !ok {
		t.Fatal("another address is throttled too")
	}
	// Throttled attempts cost nothing more: a second later one guess more.
	clock.advance(failureRefill)
	if ok, _ := g.allow("192.0.2.1"); !ok {
		t.Fatal("no attempt allowed after the refill interval")
	}
	g.refuse("192.0.2.1", "/v1-skiff/config")
	if ok, _ := g.allow("192.0.2.1"); ok {
		t.Fatal("more than one attempt per refill interval")
	}
	// Good tokens spend nothing: only refusals take credit.
	clock.advance(failureBurst * failureRefill)
	for range 3 * failureBurst {
		if ok, _ := g.allow("192.0.2.1"); !ok {
			t.Fatal("a source that stopped failing is still throttled")
		}
	}
}

func TestGuardSumsUpRefusalsOncePerMinute(t *testing.T) {
	logs := logtest.NewLocal(logrus.StandardLogger())
	defer logs.Reset()
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	g := newGuard(clock.Now)
	g.flushing = true

	for range 2000 {
		if ok, _ := g.allow("192.0.2.1"); ok {
			g.refuse("192.0.2.1", "/v1-skiff/config")
		}
	}
	if n := len(logs.AllEntries()); n != 1 {
		t.Fatalf("2000 refusals wrote %d log lines, want the first one only", n)
	}
	g.flush() // within the minute: nothing yet
	clock.advance(logWindow)
	g.flush()
	entries := logs.AllEntries()
	if len(entries) != 2 {
		t.Fatalf("after a minute %d lines, want 2", len(entries))
	}
	if msg := entries[1].Message; !strings.Contains(msg, "refused 1999 join requests in the last minute") || !strings.Contains(msg, "1990 of them throttled") || !strings.Contains(msg, "from 192.0.2.1 (1999)") {
		t.Fatalf("summary %q", msg)
	}
	// A quiet minute writes nothing, and the next refusal is logged at once.
	clock.advance(logWindow)
	g.flush()
	g.refuse("192.0.2.1", "/v1-skiff/config")
	if n := len(logs.AllEntries()); n != 3 {
		t.Fatalf("%d lines after a quiet minute and one refusal, want 3", n)
	}
}

func TestGuardLogIsBoundedAcrossSources(t *testing.T) {
	logs := logtest.NewLocal(logrus.StandardLogger())
	defer logs.Reset()
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	g := newGuard(clock.Now)
	g.flushing = true
	// 200 addresses, each within its burst: all checked, all refused.
	for i := range 200 {
		src := net.IPv4(127, 0, 1, byte(i)).String()
		for range failureBurst {
			if ok, _ := g.allow(src); !ok {
				t.Fatalf("%s throttled within its burst", src)
			}
			g.refuse(src, "/v1-skiff/config")
		}
	}
	if n := len(logs.AllEntries()); n != firstRefusalLines {
		t.Fatalf("2000 refusals from 200 addresses wrote %d lines, want %d", n, firstRefusalLines)
	}
	clock.advance(logWindow)
	g.flush()
	entries := logs.AllEntries()
	if len(entries) != firstRefusalLines+1 {
		t.Fatalf("%d lines after the summary", len(entries))
	}
	msg := entries[len(entries)-1].Message
	if !strings.Contains(msg, "refused 1995 join requests") || !strings.Contains(msg, "195 more addresses") {
		t.Fatalf("summary %q", msg)
	}
}

func TestGuardMemoryIsBounded(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	g := newGuard(clock.Now)
	g.flushing = true
	logrus.SetLevel(logrus.ErrorLevel)
	defer logrus.SetLevel(logrus.InfoLevel)
	for i := range 3 * maxSources {
		src := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String()
		if ok, _ := g.allow(src); ok {
			g.refuse(src, "/v1-skiff/config")
		}
	}
	if n := len(g.sources); n > maxSources+1 {
		t.Fatalf("%d sources tracked, want at most %d", n, maxSources+1)
	}
}

func TestSourceOf(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1:5555":         "192.0.2.1",
		"[2001:db8:1:2:3::4]:80": "2001:db8:1:2::/64",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		if got := sourceOf(r); got != want {
			t.Errorf("sourceOf(%s) = %s, want %s", addr, got, want)
		}
	}
}

func TestFloodIsThrottledAndAGoodTokenStillJoins(t *testing.T) {
	logs := logtest.NewLocal(logrus.StandardLogger())
	defer logs.Reset()
	s, srv := newTestSupervisor(t)
	wrong := s.Token
	wrong.Password = "guess"
	throttled := 0
	for range 200 {
		resp, _ := do(t, "GET", srv.URL+JoinPrefix+"config", &wrong, "", nil)
		switch resp.StatusCode {
		case http.StatusTooManyRequests:
			throttled++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("a throttled answer without Retry-After")
			}
		case http.StatusUnauthorized:
		default:
			t.Fatalf("bad token: status %d", resp.StatusCode)
		}
	}
	if throttled < 150 {
		t.Fatalf("only %d of 200 bad requests throttled", throttled)
	}
	if n := len(logs.AllEntries()); n > 1 {
		t.Fatalf("200 bad requests wrote %d log lines", n)
	}
	// The right token from the same address gets in once the address has
	// waited what it was told.
	time.Sleep(failureRefill)
	if resp, body := do(t, "GET", srv.URL+JoinPrefix+"config", &s.Token, "", nil); resp.StatusCode != 200 {
		t.Fatalf("good token after the flood: %d %s", resp.StatusCode, body)
	}
}

func TestNodeAddressesFromTheCache(t *testing.T) {
	cs := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-2"},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.20"}, {Type: corev1.NodeHostName, Address: "node-2"}}},
	})
	c := startCache(t, cs)
	if other, err := c.nodeWithAddress("node-1", net.ParseIP("192.0.2.20")); err != nil || other != "node-2" {
		t.Fatalf("owner = %q, %v; want node-2", other, err)
	}
	if other, _ := c.nodeWithAddress("node-2", net.ParseIP("192.0.2.20")); other != "" {
		t.Fatalf("a node's own address belongs to %q", other)
	}
	if other, _ := c.nodeWithAddress("node-1", net.ParseIP("192.0.2.21")); other != "" {
		t.Fatalf("a free address belongs to %q", other)
	}
}
