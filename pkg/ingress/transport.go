package ingress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// proxyTarget travels in the request context from the handler, which picks
// the backend, to the transport, which dials its endpoints.
type proxyTarget struct {
	backend *Backend
	// attempts are the endpoints in the order to try them.
	attempts []string
}

type proxyTargetKey struct{}

func withProxyTarget(ctx context.Context, target *proxyTarget) context.Context {
	return context.WithValue(ctx, proxyTargetKey{}, target)
}

func proxyTargetFrom(ctx context.Context) *proxyTarget {
	target, _ := ctx.Value(proxyTargetKey{}).(*proxyTarget)
	return target
}

// newBackendTransport returns the HTTP/1.1 transport to endpoints. It stays
// on HTTP/1.1 because protocol upgrades such as WebSocket only exist there,
// and it leaves compression alone so bodies pass through byte for byte.
func newBackendTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     false,
		DisableCompression:    true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// endpointRetrier sends a request to the endpoints of its proxyTarget in
// turn, moving on only when an endpoint could not be connected to: then
// nothing of the request has left the proxy and sending it elsewhere is safe.
type endpointRetrier struct {
	next http.RoundTripper
}

func (t *endpointRetrier) RoundTrip(req *http.Request) (*http.Response, error) {
	target := proxyTargetFrom(req.Context())
	if target == nil || len(target.attempts) == 0 {
		return t.next.RoundTrip(req)
	}
	var body *replayableBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &replayableBody{ReadCloser: req.Body}
	}
	var err error
	for i, address := range target.attempts {
		attempt := req.Clone(req.Context())
		attempt.URL.Host = address
		if body != nil {
			attempt.Body = body
		}
		var resp *http.Response
		resp, err = t.next.RoundTrip(attempt)
		if err == nil {
			return resp, nil
		}
		if !isDialError(err) || (body != nil && body.touched()) {
			break
		}
		if i+1 < len(target.attempts) {
			logrus.WithField("backend", target.backend.Service).Warnf("connect to endpoint %s: %v; trying the next endpoint", address, err)
		}
	}
	return nil, err
}

func isDialError(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// replayableBody lets one request body be offered to several attempts. The
// transport closes the body of a failed attempt, so Close is ignored here;
// the server closes the real body when the handler returns. touched reports
// whether any attempt read from it, after which it can no longer be resent.
type replayableBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (b *replayableBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.ReadCloser.Read(p)
}

func (b *replayableBody) Close() error { return nil }

func (b *replayableBody) touched() bool { return b.read.Load() }
