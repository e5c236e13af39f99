package eventreport

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func TestReporterAnnouncesEachProblemOnce(t *testing.T) {
	recorder := record.NewFakeRecorder(100)
	reporter := NewReporter[*corev1.Service](recorder)
	service := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(name + "-uid")}}
	}
	web, api := service("web"), service("api")
	handled := []*corev1.Service{web, api}
	conflict := Problem{"PortConflict", "port 8080/TCP is already served for the older Service default/old"}
	noNodes := Problem{"NoServingNodes", "no node is Ready"}

	// The same problem twice in one sync, then on every resync.
	for range 5 {
		reporter.Report(handled, []Found[*corev1.Service]{{web, conflict}, {web, conflict}})
	}
	events := drainEvents(recorder)
	if len(events) != 1 || events[0] != "Warning PortConflict "+conflict.Message {
		t.Fatalf("events = %q, want one PortConflict warning", events)
	}

	// A new problem is announced and the old one not repeated; the same
	// problem on another object is a problem of its own.
	reporter.Report(handled, []Found[*corev1.Service]{{web, conflict}, {web, noNodes}, {api, noNodes}})
	events = drainEvents(recorder)
	if len(events) != 2 || strings.Contains(strings.Join(events, "|"), "PortConflict") {
		t.Fatalf("events = %q, want the two NoServingNodes warnings", events)
	}

	// Once gone and back, it is news again.
	reporter.Report(handled, nil)
	reporter.Report(handled, []Found[*corev1.Service]{{web, conflict}})
	if events = drainEvents(recorder); len(events) != 1 {
		t.Fatalf("events after the problem came back = %q, want 1", events)
	}

	// An object recreated under the same name is a new object.
	recreated := web.DeepCopy()
	recreated.UID = types.UID("new-uid")
	reporter.Report([]*corev1.Service{recreated, api}, []Found[*corev1.Service]{{recreated, conflict}})
	if events = drainEvents(recorder); len(events) != 1 {
		t.Fatalf("events for the recreated object = %q, want 1", events)
	}
}
