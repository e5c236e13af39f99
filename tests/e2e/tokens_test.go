package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestJoinTokens manages agent join tokens on a running server and checks
// what the join endpoints accept: created tokens until deleted, the
// agent-only token, and nothing else.
func TestJoinTokens(t *testing.T) {
	s := newServer(t, "--agent-token", "agent-secret-123")
	s.start()
	s.waitReady()
	caPEM := httpsGet(t, s, nil, "/cacerts", "", 200)
	stored, err := os.ReadFile(s.paths().Server.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	caPart, _, _ := strings.Cut(strings.TrimSpace(string(stored)), "::")

	code, out := runSkiff(t, time.Minute, "token", "create", "--data-dir", s.dataDir, "--ttl", "1h", "--description", "rack 2")
	if code != 0 {
		t.Fatalf("skiff token create: exit %d: %s", code, out)
	}
	created := strings.TrimSpace(out)
	prefix, creds, ok := strings.Cut(created, "::")
	if !ok || prefix != caPart {
		t.Fatalf("created token %q does not carry the cluster's CA hash %s", created, caPart)
	}
	id, _, _ := strings.Cut(creds, ":")
	// The join endpoints read tokens from a watch cache: a new one is there
	// within moments.
	eventually(t, 10*time.Second, func() error { return joinStatus(s, caPEM, creds, 200) })

	code, out = runSkiff(t, time.Minute, "token", "list", "--data-dir", s.dataDir)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "rack 2") {
		t.Fatalf("skiff token list: exit %d:\n%s", code, out)
	}
	if strings.Contains(out, strings.TrimPrefix(creds, id+":")) {
		t.Fatal("skiff token list prints the token secret")
	}

	if code, out := runSkiff(t, time.Minute, "token", "delete", "--data-dir", s.dataDir, id); code != 0 {
		t.Fatalf("skiff token delete: exit %d: %s", code, out)
	}
	eventually(t, 10*time.Second, func() error { return joinStatus(s, caPEM, creds, 401) })
	if code, out := runSkiff(t, time.Minute, "token", "delete", "--data-dir", s.dataDir, id); code != 1 || !strings.Contains(out, "no join token") {
		t.Fatalf("deleting a deleted token: exit %d: %s", code, out)
	}

	// The agent-only token, in its full form.
	code, out = runSkiff(t, time.Minute, "token", "--agent", "--data-dir", s.dataDir)
	if code != 0 || strings.TrimSpace(out) != caPart+"::node:agent-secret-123" {
		t.Fatalf("skiff token --agent: exit %d: %q", code, out)
	}
	assertMode(t, s.paths().Server.AgentTokenFile, 0o600)
	httpsGet(t, s, caPEM, "/v1-skiff/config", "node:agent-secret-123", 200)
	httpsGet(t, s, caPEM, "/v1-skiff/config", "node:agent-secret-124", 401)

	// The agent-only token cannot start a server of this cluster.
	code, out = runSkiff(t, time.Minute, "server", "--config", "", "--data-dir", s.dataDir,
		"--https-listen-port", fmt.Sprint(freePort(t)), "--token", caPart+"::node:agent-secret-123")
	if code != 1 || !strings.Contains(out, "agent-only token") {
		t.Fatalf("server started with the agent token: exit %d: %s", code, tail(out, 5))
	}

	// Without a server, token management says what is wrong.
	if code, out := runSkiff(t, time.Minute, "token", "list", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(out, "run this on the server") {
		t.Fatalf("token list without a server: exit %d: %s", code, out)
	}
}

// joinStatus asks the join config endpoint with basic-auth creds and
// checks the status.
func joinStatus(s *server, caPEM []byte, creds string, want int) error {
	status, body, err := joinRequest(s, caPEM, http.MethodGet, "/v1-skiff/config", creds, nil, nil)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("status %d, want %d: %s", status, want, body)
	}
	return nil
}
