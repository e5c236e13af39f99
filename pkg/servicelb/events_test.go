package servicelb

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
	web := lbService("default", "web", 0, tcp(8080))
	api := lbService("default", "api", 0, tcp(6443))
	services := []*corev1.Service{web, api}
	conflict := problem{ReasonPortConflict, "port 8080/TCP is already served for the older Service default/old"}
	noNodes := problem{ReasonNoServingNodes, "no node is Ready"}

	// The same problem twice in one sync, then on every resync.
	for range 5 {
		reporter.report(services, []serviceProblem{{web, conflict}, {web, conflict}})
	}
	events := drainEvents(recorder)
	if len(events) != 1 || events[0] != "Warning PortConflict "+conflict.message {
		t.Fatalf("events = %q, want one PortConflict warning", events)
	}

	// A new problem is announced and the old one not repeated; the same
	// problem on another Service is a problem of its own.
	reporter.report(services, []serviceProblem{{web, conflict}, {web, noNodes}, {api, noNodes}})
	events = drainEvents(recorder)
	if len(events) != 2 || strings.Contains(strings.Join(events, "|"), ReasonPortConflict) {
		t.Fatalf("events = %q, want the two NoServingNodes warnings", events)
	}

	// Once gone and back, it is news again.
	reporter.report(services, nil)
	reporter.report(services, []serviceProblem{{web, conflict}})
	if events = drainEvents(recorder); len(events) != 1 {
		t.Fatalf("events after the problem came back = %q, want 1", events)
	}

	// A Service recreated under the same name is a new object.
	recreated := web.DeepCopy()
	recreated.UID = types.UID("new-uid")
	reporter.report([]*corev1.Service{recreated, api}, []serviceProblem{{recreated, conflict}})
	if events = drainEvents(recorder); len(events) != 1 {
		t.Fatalf("events for the recreated service = %q, want 1", events)
	}
}
