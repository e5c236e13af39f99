package server

import (
	"context"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// controllerManagerLeadsElsewhere reports whether another server's
// controller-manager holds its lease. Upstream names a holder
// <hostname>_<uuid>, and each server is a host of its own.
func controllerManagerLeadsElsewhere(client func() (kubernetes.Interface, error)) func(context.Context) bool {
	return func(ctx context.Context) bool {
		c, err := client()
		if err != nil {
			return false
		}
		lease, err := c.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, "kube-controller-manager", metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil || lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil {
			return false
		}
		host, err := os.Hostname()
		if err != nil {
			return false
		}
		fresh := time.Since(lease.Spec.RenewTime.Time) < time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second
		return fresh && !strings.HasPrefix(*lease.Spec.HolderIdentity, host+"_")
	}
}
