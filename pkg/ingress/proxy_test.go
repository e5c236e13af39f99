package ingress

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// proxyFor serves a proxy whose one catch-all route goes to backend.
func proxyFor(t *testing.T, backend *Backend) *httptest.Server {
	t.Helper()
	b := newRouteTableBuilder()
	b.addPath("", "/", networkingv1.PathTypePrefix, backend)
	table := b.build()
	srv := httptest.NewServer(NewProxy(func() *RouteTable { return table }))
	t.Cleanup(srv.Close)
	return srv
}

// nameServer answers every request with its name and counts them.
func nameServer(t *testing.T, name string, hits *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil {
			hits.Add(1)
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s%s", name, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func endpointOf(srv *httptest.Server) string { return srv.Listener.Addr().String() }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestProxyRoundRobinsOverEndpoints(t *testing.T) {
	a, b, c := nameServer(t, "a", nil), nameServer(t, "b", nil), nameServer(t, "c", nil)
	proxy := proxyFor(t, newBackend("default/web:80", []string{endpointOf(a), endpointOf(b), endpointOf(c)}, nil))

	var got []string
	for range 6 {
		status, body := get(t, proxy.URL+"/")
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		got = append(got, body)
	}
	if strings.Join(got, "") != "abcabc" {
		t.Errorf("endpoints hit in order %v, want a b c a b c", got)
	}
}

func TestProxyRetriesNextEndpointWhenConnectFails(t *testing.T) {
	var hits atomic.Int32
	live := nameServer(t, "live:", &hits)
	proxy := proxyFor(t, newBackend("default/web:80", []string{closedAddress(t), endpointOf(live)}, nil))

	// Four requests start twice at each endpoint; every one must succeed
	// and the body must survive the failed first attempt.
	for i := range 4 {
		payload := fmt.Sprintf("payload-%d", i)
		resp, err := http.Post(proxy.URL+"/submit", "text/plain", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "live:"+payload {
			t.Errorf("request %d: status %d body %q", i, resp.StatusCode, body)
		}
	}
	if hits.Load() != 4 {
		t.Errorf("live endpoint got %d requests, want 4", hits.Load())
	}
}

func TestProxyAnswersBadGatewayWhenNoEndpointAccepts(t *testing.T) {
	proxy := proxyFor(t, newBackend("default/web:80", []string{closedAddress(t), closedAddress(t)}, nil))
	if status, _ := get(t, proxy.URL+"/"); status != http.StatusBadGateway {
		t.Errorf("status = %d, want 502", status)
	}
}

func TestProxyDoesNotResendARequestTheEndpointReceived(t *testing.T) {
	dropper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(dropper.Close)
	var hits atomic.Int32
	other := nameServer(t, "other", &hits)
	proxy := proxyFor(t, newBackend("default/web:80", []string{endpointOf(dropper), endpointOf(other)}, nil))

	resp, err := http.Post(proxy.URL+"/pay", "text/plain", strings.NewReader("once"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status = %d, want 502", resp.StatusCode)
	}
	if hits.Load() != 0 {
		t.Errorf("request was sent again to a second endpoint")
	}
}

func TestProxyAnswersServiceUnavailableWithoutEndpoints(t *testing.T) {
	proxy := proxyFor(t, newBackend("default/web:80", nil, nil))
	status, body := get(t, proxy.URL+"/")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "no endpoints available for service default/web:80") {
		t.Errorf("got %d %q, want 503 naming the service", status, body)
	}
}

func TestProxyAnswersNotFoundWithoutRoute(t *testing.T) {
	b := newRouteTableBuilder()
	b.addPath("known.test", "/", networkingv1.PathTypePrefix, newBackend("x", []string{"127.0.0.1:1"}, nil))
	table := b.build()
	proxy := httptest.NewServer(NewProxy(func() *RouteTable { return table }))
	defer proxy.Close()
	if status, _ := get(t, proxy.URL+"/"); status != http.StatusNotFound {
		t.Errorf("status = %d, want 404", status)
	}

	notReady := httptest.NewServer(NewProxy(func() *RouteTable { return nil }))
	defer notReady.Close()
	if status, _ := get(t, notReady.URL+"/"); status != http.StatusServiceUnavailable {
		t.Errorf("status before the first table = %d, want 503", status)
	}
}

func TestProxySetsForwardedHeadersAndKeepsHost(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"host":  r.Host,
			"for":   r.Header.Get("X-Forwarded-For"),
			"fhost": r.Header.Get("X-Forwarded-Host"),
			"proto": r.Header.Get("X-Forwarded-Proto"),
			"port":  r.Header.Get("X-Forwarded-Port"),
			"path":  r.URL.RequestURI(),
		})
	}))
	defer echo.Close()
	proxy := proxyFor(t, newBackend("default/web:80", []string{endpointOf(echo)}, nil))

	req, _ := http.NewRequest(http.MethodGet, proxy.URL+"/a/b?q=1", nil)
	req.Host = "app.example.com"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	_, proxyPort, _ := net.SplitHostPort(proxy.Listener.Addr().String())
	want := map[string]string{
		"host":  "app.example.com",
		"for":   "203.0.113.7, 127.0.0.1",
		"fhost": "app.example.com",
		"proto": "http",
		"port":  proxyPort,
		"path":  "/a/b?q=1",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestProxyPassesProtocolUpgrades speaks a minimal upgraded protocol, as a
// WebSocket would after its handshake: the backend switches protocols and
// echoes bytes back until the connection closes.
func TestProxyPassesProtocolUpgrades(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "upgrade expected", http.StatusBadRequest)
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(buf, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		buf.Flush()
		_, _ = io.Copy(conn, buf)
	}))
	defer backend.Close()
	proxy := proxyFor(t, newBackend("default/ws:80", []string{endpointOf(backend)}, nil))

	conn, err := net.Dial("tcp", proxy.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /socket HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	for _, message := range []string{"hello\n", "second message\n"} {
		fmt.Fprint(conn, message)
		echoed, err := reader.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if echoed != message {
			t.Errorf("echoed %q, want %q", echoed, message)
		}
	}
}

func TestProxyStreamsResponsesAsTheyAreWritten(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "second\n")
	}))
	defer backend.Close()
	defer close(release)
	proxy := proxyFor(t, newBackend("default/stream:80", []string{endpointOf(backend)}, nil))

	resp, err := http.Get(proxy.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(resp.Body).ReadString('\n')
		line <- s
	}()
	select {
	case got := <-line:
		if got != "first\n" {
			t.Errorf("first chunk = %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first chunk not delivered while the backend was still writing")
	}
}
