package ingress

import (
	"sync/atomic"
)

// Backend is one Service port that routes send traffic to, with the
// endpoints resolved for it when the route table was built.
type Backend struct {
	// Service is "namespace/name:port" as the Ingress wrote it; it names the
	// backend in logs and error responses.
	Service string
	// Endpoints are "host:port" addresses of ready endpoints.
	Endpoints []string
	// next is shared with the backend of the same Service port in the
	// previous table, so rebuilding the table does not restart the rotation
	// at the first endpoint.
	next *atomic.Uint64
}

func newBackend(service string, endpoints []string, next *atomic.Uint64) *Backend {
	if next == nil {
		next = new(atomic.Uint64)
	}
	return &Backend{Service: service, Endpoints: endpoints, next: next}
}

// attemptOrder returns every endpoint once, starting at the next one in
// round-robin order; later entries are the ones to retry on a dial failure.
func (b *Backend) attemptOrder() []string {
	n := len(b.Endpoints)
	if n == 0 {
		return nil
	}
	start := int((b.next.Add(1) - 1) % uint64(n))
	order := make([]string, 0, n)
	order = append(order, b.Endpoints[start:]...)
	return append(order, b.Endpoints[:start]...)
}
