package servicelb

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
)

// problemReporter turns Service problems into Warning Events, one per
// problem for as long as it lasts: every change anywhere and every resync
// re-plans all Services, and repeating the same Event each time would bury
// the ones that matter.
type problemReporter struct {
	recorder record.EventRecorder
	// reported holds, per Service, the problems already announced.
	reported map[string]map[problem]bool
}

func newProblemReporter(recorder record.EventRecorder) *problemReporter {
	return &problemReporter{recorder: recorder, reported: map[string]map[problem]bool{}}
}

// report takes the complete list of current problems of the handled
// Services. Problems that went away are forgotten, so they are announced
// again should they come back.
func (r *problemReporter) report(services []*corev1.Service, problems []serviceProblem) {
	current := make(map[string]map[problem]bool, len(services))
	for _, svc := range services {
		current[serviceIdentity(svc)] = map[problem]bool{}
	}
	for _, p := range problems {
		id := serviceIdentity(p.service)
		if current[id] == nil {
			current[id] = map[problem]bool{}
		}
		if current[id][p.problem] {
			continue
		}
		current[id][p.problem] = true
		if !r.reported[id][p.problem] {
			r.recorder.Event(p.service, corev1.EventTypeWarning, p.reason, p.message)
		}
	}
	r.reported = current
}

// serviceIdentity includes the UID so that a Service deleted and created
// again under the same name hears about its problems afresh.
func serviceIdentity(svc *corev1.Service) string {
	return svc.Namespace + "/" + svc.Name + "/" + string(svc.UID)
}
