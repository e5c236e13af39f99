package supervisor

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-io/skiff/pkg/pki"
)

const serverBootstrapURL = JoinPrefix + ServerBootstrapPath

func TestServerBootstrapNeedsTheClusterToken(t *testing.T) {
	s, srv := newTestSupervisor(t)
	s.ServerBootstrap = func(context.Context) ([]byte, error) { return []byte(`{"sealed":true}`), nil }

	resp, body := do(t, "GET", srv.URL+serverBootstrapURL, &s.Token, "", nil)
	if resp.StatusCode != http.StatusOK || string(body) != `{"sealed":true}` {
		t.Fatalf("cluster token: status %d, body %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}

	agent := s.Token
	agent.Username, agent.Password = "node", "agent-secret-1"
	s.AgentToken = &agent
	cs := fake.NewClientset()
	s.JoinTokens = &JoinTokens{Client: func() (kubernetes.Interface, error) { return cs, nil }, Cache: startCache(t, cs)}
	created, err := s.JoinTokens.Create(context.Background(), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { ok, _ := s.JoinTokens.Valid(created.ID, created.Secret); return ok }, "the cache never saw the created token")
	joinToken := s.Token
	joinToken.Username, joinToken.Password = created.ID, created.Secret

	for name, tok := range map[string]pki.Token{"agent-only token": agent, "join token": joinToken} {
		resp, body := do(t, "GET", srv.URL+serverBootstrapURL, &tok, "", nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, resp.StatusCode)
		}
		if !strings.Contains(string(body), "joins agents only") || strings.Contains(string(body), "sealed") {
			t.Errorf("%s: body %q", name, body)
		}
	}

	wrong := s.Token
	wrong.Password = "not-the-secret"
	resp, body = do(t, "GET", srv.URL+serverBootstrapURL, &wrong, "", nil)
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), s.Token.Password) {
		t.Fatalf("wrong token: status %d, body %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, "GET", srv.URL+serverBootstrapURL, nil, "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: status %d, want 401", resp.StatusCode)
	}
}

func TestServerBootstrapBadTokensAreThrottled(t *testing.T) {
	s, srv := newTestSupervisor(t)
	s.ServerBootstrap = func(context.Context) ([]byte, error) { return []byte("{}"), nil }
	wrong := s.Token
	wrong.Password = "not-the-secret"
	status := 0
	for range failureBurst + 1 {
		resp, _ := do(t, "GET", srv.URL+serverBootstrapURL, &wrong, "", nil)
		status = resp.StatusCode
	}
	if status != http.StatusTooManyRequests {
		t.Fatalf("after %d bad tokens: status %d, want 429", failureBurst+1, status)
	}
}

func TestServerBootstrapUnavailable(t *testing.T) {
	s, srv := newTestSupervisor(t)
	if resp, _ := do(t, "GET", srv.URL+serverBootstrapURL, &s.Token, "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("without a ServerBootstrap: status %d, want 404", resp.StatusCode)
	}
	s.ServerBootstrap = func(context.Context) ([]byte, error) { return nil, errors.New("datastore not ready") }
	resp, body := do(t, "GET", srv.URL+serverBootstrapURL, &s.Token, "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "datastore not ready") {
		t.Fatalf("failing ServerBootstrap: status %d, body %q", resp.StatusCode, body)
	}
}
