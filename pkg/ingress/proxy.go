package ingress

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"

	"github.com/sirupsen/logrus"
)

// Proxy is the http.Handler of both listeners: it routes each request by
// the current route table and forwards it to an endpoint of the chosen
// backend.
type Proxy struct {
	routes  func() *RouteTable
	forward *httputil.ReverseProxy
}

// NewProxy returns a proxy that asks routes for the table to use on every
// request, so a new table applies to the next request without touching
// requests already in flight.
func NewProxy(routes func() *RouteTable) *Proxy {
	return &Proxy{
		routes: routes,
		forward: &httputil.ReverseProxy{
			Rewrite:       rewriteToEndpoint,
			Transport:     &endpointRetrier{next: newBackendTransport()},
			FlushInterval: -1,
			ErrorHandler:  writeBadGateway,
			ErrorLog:      log.New(logrus.StandardLogger().WriterLevel(logrus.DebugLevel), "", 0),
		},
	}
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	table := p.routes()
	if table == nil {
		http.Error(w, "ingress controller is not ready yet", http.StatusServiceUnavailable)
		return
	}
	backend := table.Match(r.Host, r.URL.Path)
	if backend == nil {
		http.Error(w, "404 page not found: no ingress rule matches this request", http.StatusNotFound)
		return
	}
	attempts := backend.attemptOrder()
	if len(attempts) == 0 {
		http.Error(w, fmt.Sprintf("no endpoints available for service %s", backend.Service), http.StatusServiceUnavailable)
		return
	}
	ctx := withProxyTarget(r.Context(), &proxyTarget{backend: backend, attempts: attempts})
	p.forward.ServeHTTP(w, r.WithContext(ctx))
}

// rewriteToEndpoint aims the outgoing request at the first endpoint to try
// and keeps the client's Host header, which the backend may route on.
func rewriteToEndpoint(pr *httputil.ProxyRequest) {
	target := proxyTargetFrom(pr.In.Context())
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = target.attempts[0]
	pr.Out.Host = pr.In.Host

	// Keep the chain of proxies in front of us, as nginx and most other
	// ingress proxies do, and append the address of the client we see.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
	if port := listenerPort(pr.In); port != "" {
		pr.Out.Header.Set("X-Forwarded-Port", port)
	}
}

func listenerPort(r *http.Request) string {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return ""
	}
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	return port
}

func writeBadGateway(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; there is nobody to answer.
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	service := ""
	if target := proxyTargetFrom(r.Context()); target != nil {
		service = target.backend.Service
	}
	logrus.WithFields(logrus.Fields{"backend": service, "host": r.Host, "path": r.URL.Path}).Errorf("proxy request: %v", err)
	http.Error(w, "bad gateway", http.StatusBadGateway)
}
