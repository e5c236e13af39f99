package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Servers are the controller's three listeners and what they serve.
type Servers struct {
	HTTP, HTTPS, Health net.Listener
	Proxy               http.Handler
	TLSConfig           *tls.Config
	Healthz             http.Handler
	// DrainTimeout bounds how long shutdown waits for in-flight requests.
	DrainTimeout time.Duration
}

// Run serves until ctx is cancelled or a listener fails, then stops
// accepting connections and lets in-flight requests finish, up to
// DrainTimeout. It returns the first listener error, or nil after a
// requested shutdown.
func (s Servers) Run(ctx context.Context) error {
	errorLog := log.New(logrus.StandardLogger().WriterLevel(logrus.DebugLevel), "", 0)
	newServer := func(handler http.Handler) *http.Server {
		return &http.Server{
			Handler: handler,
			// Only the header read is bounded: bodies and responses may
			// stream for as long as the backend wants.
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       5 * time.Minute,
			ErrorLog:          errorLog,
		}
	}
	health := http.NewServeMux()
	health.Handle("/healthz", s.Healthz)

	plain := newServer(s.Proxy)
	secure := newServer(s.Proxy)
	secure.TLSConfig = s.TLSConfig
	probes := newServer(health)

	failed := make(chan error, 3)
	serve := func(name string, run func() error) {
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			failed <- fmt.Errorf("serve %s: %w", name, err)
		}
	}
	go serve("http", func() error { return plain.Serve(s.HTTP) })
	go serve("https", func() error { return secure.ServeTLS(s.HTTPS, "", "") })
	go serve("health", func() error { return probes.Serve(s.Health) })

	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
	}

	drain := s.DrainTimeout
	if drain == 0 {
		drain = 20 * time.Second
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	var drained sync.WaitGroup
	drainErrs := make([]error, 3)
	for i, srv := range []*http.Server{plain, secure, probes} {
		drained.Go(func() { drainErrs[i] = srv.Shutdown(shutdownCtx) })
	}
	drained.Wait()
	if err == nil {
		if drainErr := errors.Join(drainErrs...); drainErr != nil {
			err = fmt.Errorf("drain connections: %w", drainErr)
		}
	}
	return err
}
