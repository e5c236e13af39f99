package servicelb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// sameIngress compares a Service's current load balancer status with the
// desired one. The API server defaults ipMode to VIP on every IP it stores,
// so a VIP there equals the nil written; anything else (hostnames, ports,
// Proxy mode) was not written by this controller and is replaced.
func sameIngress(current, desired []corev1.LoadBalancerIngress) bool {
	if len(current) != len(desired) {
		return false
	}
	for i := range current {
		c := current[i]
		if c.IP != desired[i].IP || c.Hostname != "" || len(c.Ports) != 0 ||
			(c.IPMode != nil && *c.IPMode != corev1.LoadBalancerIPModeVIP) {
			return false
		}
	}
	return true
}

// statusWriter publishes load balancer addresses on Services.
type statusWriter struct {
	client   kubernetes.Interface
	recorder record.EventRecorder
}

// sync writes every desired status that differs from the Service's and
// leaves the others alone. It returns the failures worth retrying; a
// Service deleted meanwhile is not one.
func (w *statusWriter) sync(ctx context.Context, statuses []desiredStatus) error {
	var errs []error
	for _, s := range statuses {
		if ctx.Err() != nil {
			return nil // shutting down; the next leader carries on
		}
		if sameIngress(s.service.Status.LoadBalancer.Ingress, s.ingress) {
			continue
		}
		err := w.update(ctx, s)
		switch {
		case err == nil:
			w.recorder.Event(s.service, corev1.EventTypeNormal, ReasonAddressesUpdated, addressesText(s.ingress))
		case apierrors.IsNotFound(err):
			logrus.Debugf("%v", err)
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (w *statusWriter) update(ctx context.Context, s desiredStatus) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	updated := s.service.DeepCopy()
	updated.Status.LoadBalancer.Ingress = s.ingress
	if _, err := w.client.CoreV1().Services(updated.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status of service %s/%s: %w", updated.Namespace, updated.Name, err)
	}
	logrus.Infof("service %s/%s: %s", updated.Namespace, updated.Name, addressesText(s.ingress))
	return nil
}

func addressesText(ingress []corev1.LoadBalancerIngress) string {
	if len(ingress) == 0 {
		return "load balancer addresses removed"
	}
	ips := make([]string, 0, len(ingress))
	for _, i := range ingress {
		ips = append(ips, i.IP)
	}
	return "load balancer addresses set to " + strings.Join(ips, ", ")
}
