// Package eventreport turns the problems a controller finds on its objects
// at every sync into Warning Events, one per problem for as long as it
// lasts: controllers re-check everything on every change and resync, and
// repeating the same Event each time would bury the ones that matter.
package eventreport

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// Object is what Events can be about.
type Object interface {
	metav1.Object
	runtime.Object
}

// Problem is something wrong with an object that its owner has to fix:
// the Event's reason and message.
type Problem struct {
	Reason, Message string
}

// Found is a Problem of one object.
type Found[T Object] struct {
	Object T
	Problem
}

// Reporter remembers the problems it announced, per object.
type Reporter[T Object] struct {
	recorder record.EventRecorder
	reported map[string]map[Problem]bool
}

// NewReporter announces through recorder.
func NewReporter[T Object](recorder record.EventRecorder) *Reporter[T] {
	return &Reporter[T]{recorder: recorder, reported: map[string]map[Problem]bool{}}
}

// Report takes the objects the controller handles and the complete list of
// their current problems, and announces those not announced before.
// Problems that went away are forgotten, so they are announced again should
// they come back.
func (r *Reporter[T]) Report(handled []T, problems []Found[T]) {
	current := make(map[string]map[Problem]bool, len(handled))
	for _, obj := range handled {
		current[identity(obj)] = map[Problem]bool{}
	}
	for _, p := range problems {
		id := identity(p.Object)
		if current[id] == nil {
			current[id] = map[Problem]bool{}
		}
		if current[id][p.Problem] {
			continue
		}
		current[id][p.Problem] = true
		if !r.reported[id][p.Problem] {
			r.recorder.Event(p.Object, corev1.EventTypeWarning, p.Reason, p.Message)
		}
	}
	r.reported = current
}

// identity includes the UID so that an object deleted and created again
// under the same name hears about its problems afresh.
func identity(obj Object) string {
	return obj.GetNamespace() + "/" + obj.GetName() + "/" + string(obj.GetUID())
}
