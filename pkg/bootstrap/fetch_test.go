package bootstrap

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/supervisor"
)

// testServer is a server's supervisor on TLS with a real server CA, which
// the cluster token pins.
type testServer struct {
	url        string
	token      pki.Token
	agentToken pki.Token
	sup        *supervisor.Supervisor
	// joinRequests counts requests that got past /cacerts.
	joinRequests atomic.Int32
}

func newTestServer(t *testing.T, ds Datastore) *testServer {
	t.Helper()
	certs, err := pki.EnsureServer(t.TempDir(), pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := certs.ServerCABundle()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := pki.NewToken(bundle, pki.ServerTokenUser)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := tls.LoadX509KeyPair(certs.ServingCert, certs.ServingKey)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{token: tok, agentToken: pki.Token{CAHash: tok.CAHash, Username: pki.AgentTokenUser, Password: "agent-secret"}}
	ts.sup = &supervisor.Supervisor{PKI: certs, Token: tok, AgentToken: &ts.agentToken}
	ts.sup.ServerBootstrap = func(context.Context) ([]byte, error) {
		return MarshalResponse(ds, testMaterial(), tok.Password)
	}
	handler := ts.sup.Wrap(http.NotFoundHandler())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, supervisor.JoinPrefix) {
			ts.joinRequests.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serving}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ts.url = srv.URL
	return ts
}

var external = Datastore{Kind: KindExternal}

func TestFetch(t *testing.T) {
	ts := newTestServer(t, external)
	resp, m, err := Fetch(context.Background(), ts.url+"/", ts.token)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Datastore.Kind != KindExternal {
		t.Errorf("datastore kind %q", resp.Datastore.Kind)
	}
	if !m.Equal(testMaterial()) {
		t.Errorf("fetched %v, want %v", names(m), names(testMaterial()))
	}
}

func TestFetchEmbeddedEtcd(t *testing.T) {
	urls := []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}
	ts := newTestServer(t, Datastore{Kind: KindEtcd, EtcdClientURLs: urls})
	resp, _, err := Fetch(context.Background(), ts.url, ts.token)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Datastore.Kind != KindEtcd || !slices.Equal(resp.Datastore.EtcdClientURLs, urls) {
		t.Fatalf("datastore %+v", resp.Datastore)
	}
}

func TestFetchWithABareToken(t *testing.T) {
	ts := newTestServer(t, external)
	logs := logtest.NewGlobal()
	defer logs.Reset()
	// A bare secret has neither a CA hash nor a username.
	_, m, err := Fetch(context.Background(), ts.url, pki.Token{Password: ts.token.Password})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Equal(testMaterial()) {
		t.Fatal("fetched material differs")
	}
	warned := false
	for _, e := range logs.AllEntries() {
		warned = warned || strings.Contains(e.Message, "no CA hash")
		if strings.Contains(e.Message, ts.token.Password) {
			t.Errorf("log line %q quotes the token", e.Message)
		}
	}
	if !warned {
		t.Error("no warning that the server's identity is not verified")
	}
}

func TestFetchRefusals(t *testing.T) {
	ts := newTestServer(t, external)
	wrong := ts.token
	wrong.Password = "not-the-secret"
	for name, c := range map[string]struct {
		token pki.Token
		want  []string
	}{
		"agent-only token": {ts.agentToken, []string{ts.url, "agent-only", "skiff token"}},
		"wrong token":      {wrong, []string{ts.url, "not this cluster's token", "skiff token"}},
	} {
		_, _, err := Fetch(context.Background(), ts.url, c.token)
		if err == nil {
			t.Errorf("%s: Fetch succeeded", name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", name, err, w)
			}
		}
		if Retryable(err) || strings.Contains(err.Error(), c.token.Password) {
			t.Errorf("%s: error %q is retryable or quotes the token", name, err)
		}
	}
}

func TestFetchRefusesAForeignCABeforeSendingTheToken(t *testing.T) {
	ts := newTestServer(t, external)
	foreign := ts.token
	foreign.CAHash = pki.CAHash([]byte("another cluster's CA"))
	_, _, err := Fetch(context.Background(), ts.url, foreign)
	if err == nil || !strings.Contains(err.Error(), "does not match the join token's hash") {
		t.Fatalf("error %v, want a CA mismatch", err)
	}
	if n := ts.joinRequests.Load(); n != 0 {
		t.Fatalf("%d requests with the token reached a server whose CA did not match", n)
	}
}

func TestFetchFromAnUnreachableServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, _, err := Fetch(context.Background(), url, pki.Token{Password: "secret"})
	if err == nil || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "is it running? check --server") {
		t.Fatalf("error %v", err)
	}
	if !Retryable(err) {
		t.Errorf("an unreachable server is worth retrying: %v", err)
	}
}

func TestFetchFromAServerOnSQLite(t *testing.T) {
	ts := newTestServer(t, Datastore{Kind: KindSQLite})
	_, _, err := Fetch(context.Background(), ts.url, ts.token)
	if err == nil || !strings.Contains(err.Error(), "embedded SQLite") || !strings.Contains(err.Error(), "--cluster-init") || !strings.Contains(err.Error(), "--datastore-endpoint") {
		t.Fatalf("error %v", err)
	}
}

func TestFetchFromAServerNotReady(t *testing.T) {
	ts := newTestServer(t, external)
	ts.sup.ServerBootstrap = func(context.Context) ([]byte, error) { return nil, errors.New("the datastore is starting") }
	_, _, err := Fetch(context.Background(), ts.url, ts.token)
	if err == nil || !Retryable(err) {
		t.Fatalf("error %v, want a retryable one", err)
	}
}

func TestFetchNeedsAnHTTPSURL(t *testing.T) {
	for _, url := range []string{"http://10.0.0.1:6443", "10.0.0.1:6443", "https://"} {
		if _, _, err := Fetch(context.Background(), url, pki.Token{Password: "secret"}); err == nil || !strings.Contains(err.Error(), "--server") {
			t.Errorf("Fetch(%q): %v", url, err)
		}
	}
}
