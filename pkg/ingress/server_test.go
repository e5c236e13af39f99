package ingress

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestServersDrainInFlightRequestsOnShutdown(t *testing.T) {
	started := make(chan struct{})
	finish := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-finish
		fmt.Fprint(w, "finished")
	})
	fallback, err := newFallbackCertificate()
	if err != nil {
		t.Fatal(err)
	}
	servers := Servers{
		HTTP: listen(t), HTTPS: listen(t), Health: listen(t),
		Proxy:        slow,
		TLSConfig:    (&Controller{fallback: fallback}).TLSConfig(),
		Healthz:      http.NotFoundHandler(),
		DrainTimeout: 10 * time.Second,
	}
	url := "http://" + servers.HTTP.Addr().String() + "/"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- servers.Run(ctx) }()

	result := make(chan string, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			result <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		result <- string(body)
	}()
	<-started
	cancel()

	// Shutdown closes the listeners at once but waits for the request.
	eventually(t, "the listener to close", func() bool {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("servers stopped with a request in flight: %v", err)
	default:
	}
	close(finish)
	if got := <-result; got != "finished" {
		t.Errorf("in-flight request got %q, want finished", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after a requested shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("servers did not stop after draining")
	}
}
