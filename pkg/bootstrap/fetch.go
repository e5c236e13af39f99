package bootstrap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/skiff-io/skiff/pkg/agent/join"
	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/supervisor"
)

// How a cluster keeps its data, which decides how another server joins it.
const (
	// KindEtcd is embedded etcd: a joining server becomes a member.
	KindEtcd = "etcd"
	// KindExternal is a datastore outside the servers (PostgreSQL, MySQL,
	// etcd through kine): every server is given the same endpoint.
	KindExternal = "external"
	// KindSQLite is the embedded SQLite file, which no other server can
	// share.
	KindSQLite = "sqlite"
)

// maxResponseBytes bounds what Fetch reads; the material is a few dozen
// kilobytes.
const maxResponseBytes = 4 << 20

// Response is what a server answers a server that joins it.
type Response struct {
	// Material is the shared files, sealed with the cluster token; empty
	// when the datastore cannot be shared.
	Material  []byte    `json:"material,omitempty"`
	Datastore Datastore `json:"datastore"`
}

// Datastore tells a joining server how the cluster stores its data. An
// external datastore's endpoint is not sent: it carries credentials, and
// each server is given it with --datastore-endpoint.
type Datastore struct {
	Kind string `json:"kind"`
	// EtcdClientURLs are the embedded etcd members' client URLs.
	EtcdClientURLs []string `json:"etcdClientURLs,omitempty"`
}

// MarshalResponse builds the body of the server bootstrap endpoint: m
// sealed with passphrase (the cluster token's password), and ds. On SQLite
// nothing is sealed, since no server can join.
func MarshalResponse(ds Datastore, m Material, passphrase string) ([]byte, error) {
	r := Response{Datastore: ds}
	if ds.Kind != KindSQLite {
		sealed, err := Seal(m, passphrase)
		if err != nil {
			return nil, err
		}
		r.Material = sealed
	}
	return json.Marshal(r)
}

// retryableError is a failure that may pass: the server is unreachable,
// starting, or throttling.
type retryableError struct{ error }

func (e retryableError) Unwrap() error { return e.error }

// Retryable reports whether Fetch failed in a way that trying again later
// may cure; every other failure needs the user to change something.
func Retryable(err error) bool {
	var r retryableError
	return errors.As(err, &r)
}

// Fetch obtains the cluster's shared files from the server at serverURL
// for a server joining it. The server CA is pinned to the token's hash as
// agents pin it, before the token is sent.
func Fetch(ctx context.Context, serverURL string, token pki.Token) (*Response, Material, error) {
	serverURL = strings.TrimRight(serverURL, "/")
	if u, err := url.Parse(serverURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("--server %q is not an https URL; give the address of a server of the cluster, such as https://10.0.0.1:6443", serverURL)
	}
	if token.Username == "" {
		token.Username = pki.ServerTokenUser
	}
	ca, err := join.FetchCA(ctx, serverURL, token)
	if err != nil {
		var transport *url.Error
		if errors.As(err, &transport) {
			return nil, nil, unreachable(ctx, serverURL, transport.Err)
		}
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, nil, fmt.Errorf("the server at %s sent no usable CA certificate; check that --server is a skiff server", serverURL)
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, serverURL+supervisor.JoinPrefix+supervisor.ServerBootstrapPath, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("server bootstrap request to %s: %w", serverURL, err)
	}
	req.SetBasicAuth(token.Username, token.Password)
	resp, err := client.Do(req)
	if err != nil {
		var transport *url.Error
		if errors.As(err, &transport) {
			err = transport.Err
		}
		return nil, nil, unreachable(ctx, serverURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, nil, retryableError{fmt.Errorf("read the server bootstrap material from %s: %w", serverURL, err)}
	}
	if err := statusError(serverURL, resp.StatusCode, resp.Status, body); err != nil {
		return nil, nil, err
	}

	var r Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, nil, fmt.Errorf("the server at %s sent an unreadable server bootstrap answer (%v); run the same skiff version on every server", serverURL, err)
	}
	switch r.Datastore.Kind {
	case KindSQLite:
		return nil, nil, fmt.Errorf("the server at %s keeps its data in embedded SQLite, which only one server can use; start it with --cluster-init (embedded etcd) or give all servers the same --datastore-endpoint", serverURL)
	case KindEtcd:
		if len(r.Datastore.EtcdClientURLs) == 0 {
			return nil, nil, fmt.Errorf("the server at %s runs embedded etcd but named no etcd client URL; run the same skiff version on every server", serverURL)
		}
	case KindExternal:
	default:
		return nil, nil, fmt.Errorf("the server at %s keeps its data in a way this skiff does not know (%q); run the same skiff version on every server", serverURL, r.Datastore.Kind)
	}
	if len(r.Material) == 0 {
		return nil, nil, fmt.Errorf("the server at %s sent no bootstrap material; run the same skiff version on every server", serverURL)
	}
	m, err := Open(r.Material, token.Password)
	if err != nil {
		return nil, nil, fmt.Errorf("bootstrap material from %s: %w", serverURL, err)
	}
	return &r, m, nil
}

func unreachable(ctx context.Context, serverURL string, cause error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("fetch the server bootstrap material from %s: %w", serverURL, ctx.Err())
	}
	return retryableError{fmt.Errorf("cannot reach the server at %s (%v); is it running? check --server", serverURL, cause)}
}

// statusError turns a refusal into the cause and the fix; the server's
// own message is passed on only where it says more than the status.
func statusError(serverURL string, code int, status string, body []byte) error {
	said := strings.TrimSpace(string(body))
	switch code {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized:
		return fmt.Errorf("the server at %s refused the token: it is not this cluster's token; pass the cluster token, from `skiff token` or <data-dir>/server/token on a server of the cluster", serverURL)
	case http.StatusForbidden:
		return fmt.Errorf("the server at %s refused the token for a server: it is an agent-only token, which joins agents only; pass the cluster token, from `skiff token` or <data-dir>/server/token on a server of the cluster", serverURL)
	case http.StatusNotFound:
		return fmt.Errorf("the server at %s does not hand out server bootstrap material, so no server can join it; run the same skiff version on every server", serverURL)
	case http.StatusTooManyRequests:
		return retryableError{fmt.Errorf("the server at %s is throttling this address after too many bad tokens; wait a minute, and pass the cluster token", serverURL)}
	}
	if code >= 500 {
		return retryableError{fmt.Errorf("the server at %s is not ready to hand out server bootstrap material (%s: %s)", serverURL, status, said)}
	}
	return fmt.Errorf("the server at %s refused the server bootstrap request (%s: %s)", serverURL, status, said)
}
