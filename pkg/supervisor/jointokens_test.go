package supervisor

import (
	"context"
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

	tok, err := j.Create(ctx, time.Hour, "rack 2")
	if err != nil {
		t.Fatal(err)
	}
	if !tokenIDPattern.MatchString(tok.ID) || len(tok.Secret) != 16 {
		t.Fatalf("token %+v: want a 6-character ID and 16-character secret", tok)
	}
	if !j.Valid(ctx, tok.ID, tok.Secret) {
		t.Fatal("a fresh token is not valid")
	}
	if j.Valid(ctx, tok.ID, strings.Repeat("x", 16)) {
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
	if j.Valid(ctx, tok.ID, tok.Secret) {
		t.Fatal("an expired token is accepted")
	}

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
	s.JoinTokens = &JoinTokens{Client: func() (kubernetes.Interface, error) { return cs, nil }}
	created, err := s.JoinTokens.Create(context.Background(), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	agent := s.Token
	agent.Username, agent.Password = created.ID, created.Secret
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
