package supervisor

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

func TestJoinTokensLifecycle(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	j := &JoinTokens{Client: func() (kubernetes.Interface, error) { return cs, nil }}
	j.Cache = startCache(t, cs)

	tok, err := j.Create(ctx, time.Hour, "rack 2")
	if err != nil {
		t.Fatal(err)
	}
	if !tokenIDPattern.MatchString(tok.ID) || len(tok.Secret) != 16 {
		t.Fatalf("token %+v: want a 6-character ID and 16-character secret", tok)
	}
	eventually(t, func() bool { ok, _ := j.Valid(tok.ID, tok.Secret); return ok }, "a fresh token is not valid")
	if ok, _ := j.Valid(tok.ID, strings.Repeat("x", 16)); ok {
		t.Fatal("a wrong secret is accepted")
	}
	list, err := j.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID || list[0].Description != "rack 2" || list[0].Secret != "" {
		t.Fatalf("list = %+v, %v", list, err)
	}

	// An expired token no longer admits anyone, even before the token
	// cleaner deletes it.
	s, _ := cs.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+tok.ID, metav1.GetOptions{})
	s.Data["expiration"] = []byte(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
	if _, err := cs.CoreV1().Secrets("kube-system").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { ok, _ := j.Valid(tok.ID, tok.Secret); return !ok }, "an expired token is accepted")

	if err := j.Delete(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := j.Delete(ctx, tok.ID); err == nil || !strings.Contains(err.Error(), "no join token") {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := j.Delete(ctx, "../etc"); err == nil || !strings.Contains(err.Error(), "invalid token ID") {
		t.Fatalf("bad ID: %v", err)
	}
}

func TestJoinEndpointsAcceptAgentTokens(t *testing.T) {
	s, srv := newTestSupervisor(t)
	cs := fake.NewClientset()
	s.JoinTokens = &JoinTokens{Client: func() (kubernetes.Interface, error) { return cs, nil }, Cache: startCache(t, cs)}
	created, err := s.JoinTokens.Create(context.Background(), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	agent := s.Token
	agent.Username, agent.Password = created.ID, created.Secret
	eventually(t, func() bool { ok, _ := s.JoinTokens.Valid(created.ID, created.Secret); return ok }, "the cache never saw the created token")
	if resp, body := do(t, "GET", srv.URL+JoinPrefix+"config", &agent, "", nil); resp.StatusCode != 200 {
		t.Fatalf("created token refused: %d %s", resp.StatusCode, body)
	}
	s.AgentToken = &agent
	s.AgentToken.Username, s.AgentToken.Password = "node", "agent-secret-1"
	only := *s.AgentToken
	if resp, body := do(t, "GET", srv.URL+JoinPrefix+"config", &only, "", nil); resp.StatusCode != 200 {
		t.Fatalf("agent token refused: %d %s", resp.StatusCode, body)
	}
	only.Password = "wrong"
	if resp, _ := do(t, "GET", srv.URL+JoinPrefix+"config", &only, "", nil); resp.StatusCode != 401 {
		t.Fatalf("wrong agent token: %d, want 401", resp.StatusCode)
	}
}

func TestJoinTokensBeforeTheCacheIsReady(t *testing.T) {
	s, srv := newTestSupervisor(t)
	s.JoinTokens = &JoinTokens{Cache: &Cache{}}
	tok := s.Token
	tok.Username, tok.Password = "abcdef", "0123456789abcdef"
	// Not yet known is not the same as wrong: the agent must retry, not give up.
	if resp, body := do(t, "GET", srv.URL+JoinPrefix+"config", &tok, "", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d (%s), want 503 while the cache is not ready", resp.StatusCode, body)
	}
	// The server's own token needs no cache.
	if resp, body := do(t, "GET", srv.URL+JoinPrefix+"config", &s.Token, "", nil); resp.StatusCode != 200 {
		t.Fatalf("cluster token: status %d (%s)", resp.StatusCode, body)
	}
}

// startCache runs a join cache on a fake clientset until the test ends.
func startCache(t *testing.T, cs kubernetes.Interface) *Cache {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{Client: func() (kubernetes.Interface, error) { return cs, nil }}
	done, err := c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func eventually(t *testing.T, cond func() bool, failure string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
