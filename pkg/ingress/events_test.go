package ingress

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

func drainEvents(recorder *record.FakeRecorder) []string {
	var events []string
	for {
		select {
		case e := <-recorder.Events:
			events = append(events, e)
		default:
			return events
		}
	}
}

func TestProblemReporterAnnouncesEachProblemOnce(t *testing.T) {
	recorder := record.NewFakeRecorder(100)
	reporter := newProblemReporter(recorder)
	site := newIngress("default", "site", testTime)
	other := newIngress("default", "other", testTime)
	ingresses := []*networkingv1.Ingress{site, other}
	missingService := problem{reason: "ServiceNotFound", message: "Service default/ghost not found"}
	missingSecret := problem{reason: "TLSSecretNotFound", message: "TLS Secret default/tls not found"}

	// The same problem reported twice in one build, then on every resync.
	for range 5 {
		reporter.report(ingresses, []ingressProblem{{site, missingService}, {site, missingService}})
	}
	events := drainEvents(recorder)
	if len(events) != 1 || events[0] != "Warning ServiceNotFound Service default/ghost not found" {
		t.Fatalf("events = %q, want one ServiceNotFound warning", events)
	}

	// A new problem is announced; the old one is not repeated. The same
	// problem on a different Ingress is a distinct problem.
	reporter.report(ingresses, []ingressProblem{{site, missingService}, {site, missingSecret}, {other, missingService}})
	events = drainEvents(recorder)
	if len(events) != 2 || !strings.Contains(strings.Join(events, "|"), "TLSSecretNotFound") {
		t.Fatalf("events = %q, want the secret problem and the other ingress's service problem", events)
	}

	// Once fixed and broken again, it is news again.
	reporter.report(ingresses, nil)
	reporter.report(ingresses, []ingressProblem{{site, missingService}})
	if events = drainEvents(recorder); len(events) != 1 {
		t.Fatalf("events after the problem came back = %q, want 1", events)
	}

	// An Ingress recreated under the same name is a new object.
	recreated := site.DeepCopy()
	recreated.UID = types.UID("new-uid")
	reporter.report([]*networkingv1.Ingress{recreated, other}, []ingressProblem{{recreated, missingService}})
	if events = drainEvents(recorder); len(events) != 1 {
		t.Fatalf("events for the recreated ingress = %q, want 1", events)
	}
}
