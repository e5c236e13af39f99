package ingress

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/record"
)

// problemReporter turns ingress problems into Warning Events, one per
// problem for as long as it lasts: rebuilds happen on every resync and every
// unrelated change, and repeating the same Event each time would bury the
// ones that matter.
type problemReporter struct {
	recorder record.EventRecorder
	// reported holds, per Ingress, the problems already announced.
	reported map[string]map[problem]bool
}

func newProblemReporter(recorder record.EventRecorder) *problemReporter {
	return &problemReporter{recorder: recorder, reported: map[string]map[problem]bool{}}
}

// report takes the complete list of current problems of the handled
// ingresses. Problems that went away are forgotten, so they are announced
// again should they come back.
func (r *problemReporter) report(ingresses []*networkingv1.Ingress, problems []ingressProblem) {
	current := make(map[string]map[problem]bool, len(ingresses))
	for _, ing := range ingresses {
		current[ingressIdentity(ing)] = map[problem]bool{}
	}
	for _, p := range problems {
		id := ingressIdentity(p.ingress)
		if current[id] == nil {
			current[id] = map[problem]bool{}
		}
		if current[id][p.problem] {
			continue
		}
		current[id][p.problem] = true
		if !r.reported[id][p.problem] {
			r.recorder.Event(p.ingress, corev1.EventTypeWarning, p.reason, p.message)
		}
	}
	r.reported = current
}

// ingressIdentity includes the UID so that an Ingress deleted and created
// again under the same name hears about its problems afresh.
func ingressIdentity(ing *networkingv1.Ingress) string {
	return ing.Namespace + "/" + ing.Name + "/" + string(ing.UID)
}
