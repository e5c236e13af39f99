package ingress

import (
	"context"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

func controllerPod(name, hostIP string, ready bool, podLabels map[string]string) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name, Labels: podLabels},
		Status: corev1.PodStatus{
			HostIP:     hostIP,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}},
		},
	}
}

var controllerLabels = map[string]string{"app.kubernetes.io/name": "skiff-ingress"}

func TestLoadBalancerAddressesAreReadyControllerNodesSorted(t *testing.T) {
	deleting := controllerPod("deleting", "10.0.0.5", true, controllerLabels)
	deleting.DeletionTimestamp = ptr(metav1.Now())
	pending := controllerPod("pending", "", true, controllerLabels)
	pods := []*corev1.Pod{
		controllerPod("a", "10.0.0.10", true, controllerLabels),
		controllerPod("b", "10.0.0.9", true, controllerLabels),
		controllerPod("c", "10.0.0.3", false, controllerLabels),
		controllerPod("d", "10.0.0.9", true, controllerLabels),
		controllerPod("e", "fd00::1", true, controllerLabels),
		controllerPod("unrelated", "10.0.0.1", true, map[string]string{"app": "web"}),
		deleting,
		pending,
	}
	selector := labels.SelectorFromSet(controllerLabels)

	got := loadBalancerAddresses(pods, selector)
	want := []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.9"}, {IP: "10.0.0.10"}, {IP: "fd00::1"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("addresses = %v, want %v", got, want)
	}
	// Every replica must come to the same answer whatever order it lists
	// the pods in.
	reversed := make([]*corev1.Pod, len(pods))
	for i, p := range pods {
		reversed[len(pods)-1-i] = p
	}
	if again := loadBalancerAddresses(reversed, selector); !reflect.DeepEqual(again, want) {
		t.Errorf("addresses from reversed pod list = %v", again)
	}
}

func TestStatusWriterWritesOnlyWhenDifferent(t *testing.T) {
	desired := []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}
	current := newIngress("default", "current", testTime)
	current.Status.LoadBalancer.Ingress = append([]networkingv1.IngressLoadBalancerIngress(nil), desired...)
	stale := newIngress("default", "stale", testTime)
	stale.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.1"}}
	reordered := newIngress("default", "reordered", testTime)
	reordered.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.2"}, {IP: "10.0.0.1"}}
	fresh := newIngress("default", "fresh", testTime)
	client := fake.NewClientset(current, stale, reordered, fresh)
	writer := &statusWriter{client: client}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	writer.sync(ctx, []*networkingv1.Ingress{current, stale, reordered, fresh}, desired)

	var updated []string
	for _, action := range client.Actions() {
		if action.GetVerb() == "update" && action.GetSubresource() == "status" {
			updated = append(updated, action.(clienttesting.UpdateAction).GetObject().(*networkingv1.Ingress).Name)
		}
	}
	if !reflect.DeepEqual(updated, []string{"stale", "reordered", "fresh"}) {
		t.Errorf("status written for %v, want stale, reordered and fresh", updated)
	}
	for _, name := range []string{"stale", "reordered", "fresh"} {
		ing, err := client.NetworkingV1().Ingresses("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ing.Status.LoadBalancer.Ingress, desired) {
			t.Errorf("%s status = %v, want %v", name, ing.Status.LoadBalancer.Ingress, desired)
		}
	}
}
