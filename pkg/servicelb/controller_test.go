package servicelb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

func eventually(t *testing.T, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestControllerWritesStatusAndReportsConflicts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wasLB := withStatus(lbService("default", "was-lb", 0, tcp(7070)), "10.0.0.1")
	wasLB.Spec.Type = corev1.ServiceTypeClusterIP
	client := fake.NewClientset(
		node("a", true, nil, "10.0.0.1"),
		lbService("default", "newer", 5, tcp(8080)),
		lbService("default", "older", 1, tcp(8080), udp(53)),
		lbService("default", "api", 0, tcp(6443)),
		wasLB,
	)
	recorder := record.NewFakeRecorder(100)
	controller, err := NewController(client, Options{
		Reserved: []ReservedPort{{6443, corev1.ProtocolTCP, "the Skiff API server"}},
		Recorder: recorder,
		Debounce: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	health := httptest.NewServer(controller.Healthz())
	defer health.Close()
	if resp, err := http.Get(health.URL); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("health before sync: %v %v, want 503", resp, err)
	}
	done := make(chan error, 1)
	go func() { done <- controller.Run(ctx) }()

	ipsOf := func(name string) []string {
		svc, err := client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return []string{err.Error()}
		}
		var ips []string
		for _, i := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, i.IP)
		}
		return ips
	}
	var events []string
	sawEvent := func(prefix string, words ...string) func() bool {
		return func() bool {
			events = append(events, drainEvents(recorder)...)
			return slices.ContainsFunc(events, func(e string) bool {
				if !strings.HasPrefix(e, prefix) {
					return false
				}
				for _, w := range words {
					if !strings.Contains(e, w) {
						return false
					}
				}
				return true
			})
		}
	}

	eventually(t, "the older Service's addresses", func() bool { return slices.Equal(ipsOf("older"), []string{"10.0.0.1"}) })
	eventually(t, "the PortConflict event", sawEvent("Warning PortConflict", "8080/TCP", "default/older"))
	eventually(t, "the PortReserved event", sawEvent("Warning PortReserved", "6443/TCP", "the Skiff API server"))
	eventually(t, "the AddressesUpdated event", sawEvent("Normal AddressesUpdated", "10.0.0.1"))
	eventually(t, "the stale status cleared", func() bool { return len(ipsOf("was-lb")) == 0 })
	if got := ipsOf("newer"); len(got) != 0 {
		t.Fatalf("newer Service addresses = %q while the older one holds the port", got)
	}
	if got := ipsOf("api"); len(got) != 0 {
		t.Fatalf("Service on a reserved port got addresses %q", got)
	}
	if resp, err := http.Get(health.URL); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health after sync: %v %v, want 200", resp, err)
	}

	// The holder goes away: the waiting Service is served, and follows a
	// new node.
	if err := client.CoreV1().Services("default").Delete(ctx, "older", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the newer Service's addresses", func() bool { return slices.Equal(ipsOf("newer"), []string{"10.0.0.1"}) })
	if _, err := client.CoreV1().Nodes().Create(ctx, node("b", true, nil, "10.0.0.2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second node's address", func() bool { return slices.Equal(ipsOf("newer"), []string{"10.0.0.1", "10.0.0.2"}) })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestNewControllerRefusesAPortReservedTwice(t *testing.T) {
	_, err := NewController(fake.NewClientset(), Options{
		Reserved: []ReservedPort{{80, corev1.ProtocolTCP, "ingress"}, {80, corev1.ProtocolTCP, "something else"}},
		Recorder: record.NewFakeRecorder(1),
	})
	if err == nil || !strings.Contains(err.Error(), "80/TCP") {
		t.Fatalf("err = %v, want one naming 80/TCP", err)
	}
}
