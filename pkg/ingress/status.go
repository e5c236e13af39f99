package ingress

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// loadBalancerAddresses is the status every handled Ingress should carry:
// the IPs of the nodes where a ready controller pod accepts traffic on its
// host ports. Every replica computes the same sorted list from the same
// pods, which is what lets them share the status without fighting.
func loadBalancerAddresses(pods []*corev1.Pod, selector labels.Selector) []networkingv1.IngressLoadBalancerIngress {
	seen := map[string]bool{}
	var ips []string
	for _, pod := range pods {
		if !selector.Matches(labels.Set(pod.Labels)) || pod.DeletionTimestamp != nil || !podReady(pod) {
			continue
		}
		ip := pod.Status.HostIP
		if ip == "" || seen[ip] {
			continue
		}
		seen[ip] = true
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, compareIPs)
	addresses := make([]networkingv1.IngressLoadBalancerIngress, 0, len(ips))
	for _, ip := range ips {
		addresses = append(addresses, networkingv1.IngressLoadBalancerIngress{IP: ip})
	}
	return addresses
}

func podReady(pod *corev1.Pod) bool {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// compareIPs orders addresses numerically, IPv4 before IPv6, and falls back
// to text for anything that does not parse.
func compareIPs(a, b string) int {
	addrA, errA := netip.ParseAddr(a)
	addrB, errB := netip.ParseAddr(b)
	if errA == nil && errB == nil {
		return addrA.Compare(addrB)
	}
	return strings.Compare(a, b)
}

func sameAddresses(current, desired []networkingv1.IngressLoadBalancerIngress) bool {
	if len(current) != len(desired) {
		return false
	}
	for i := range current {
		if current[i].IP != desired[i].IP || current[i].Hostname != desired[i].Hostname || len(current[i].Ports) != 0 {
			return false
		}
	}
	return true
}

// statusWriter publishes the load balancer addresses on Ingresses.
type statusWriter struct {
	client kubernetes.Interface
}

// sync writes desired to every Ingress whose status differs and leaves the
// others alone. A failed write is retried at the next rebuild, which the
// write conflicts of concurrent replicas cause anyway.
func (w *statusWriter) sync(ctx context.Context, ingresses []*networkingv1.Ingress, desired []networkingv1.IngressLoadBalancerIngress) {
	for _, ing := range ingresses {
		if ctx.Err() != nil {
			return // shutting down; the remaining replicas keep the status
		}
		if sameAddresses(ing.Status.LoadBalancer.Ingress, desired) {
			continue
		}
		if err := w.update(ctx, ing, desired); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				logrus.Debugf("%v", err)
				continue
			}
			logrus.Errorf("%v", err)
		}
	}
}

func (w *statusWriter) update(ctx context.Context, ing *networkingv1.Ingress, desired []networkingv1.IngressLoadBalancerIngress) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	updated := ing.DeepCopy()
	updated.Status.LoadBalancer.Ingress = desired
	if _, err := w.client.NetworkingV1().Ingresses(ing.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status of ingress %s/%s: %w", ing.Namespace, ing.Name, err)
	}
	return nil
}
