package loadbalancer

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func hostPort(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "https://") }

// get opens a new connection each time, as a client reconnecting would.
func get(t *testing.T, addr string) (string, error) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
	}}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestFailsOverAndBack(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	lb, err := New("127.0.0.1:0", []string{hostPort(a), hostPort(b)})
	if err != nil {
		t.Fatal(err)
	}
	lb.CheckInterval = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go lb.Run(ctx)

	if got, err := get(t, lb.Address()); err != nil || got != "a" {
		t.Fatalf("first server preferred: got %q, %v", got, err)
	}
	a.Close()
	if got, err := get(t, lb.Address()); err != nil || got != "b" {
		t.Fatalf("after the first server died: got %q, %v", got, err)
	}

	// A new server list (as learned from the cluster) takes effect; the old
	// servers' connections are closed.
	c := backend(t, "c")
	lb.SetServers([]string{hostPort(c)})
	if got, err := get(t, lb.Address()); err != nil || got != "c" {
		t.Fatalf("after the list changed: got %q, %v", got, err)
	}
}

func TestNoServerReachable(t *testing.T) {
	a := backend(t, "a")
	addr := hostPort(a)
	a.Close()
	lb, err := New("127.0.0.1:0", []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go lb.Run(ctx)
	if _, err := get(t, lb.Address()); err == nil {
		t.Fatal("a request succeeded with no server up")
	}
}

func TestBusyAddress(t *testing.T) {
	lb, err := New("127.0.0.1:0", []string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.listener.Close()
	if _, err := New(lb.Address(), []string{"127.0.0.1:1"}); err == nil || !strings.Contains(err.Error(), "another skiff server or agent") {
		t.Fatalf("second load balancer on the same address: %v", err)
	}
}
