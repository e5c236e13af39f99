package pki

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnsureClusterToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	ca := []byte("-----BEGIN CERTIFICATE-----\nthis cluster\n-----END CERTIFICATE-----\n")

	first, created, err := EnsureClusterToken(path, "", ca, "server-ca.crt")
	if err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	if !first.VerifyCA(ca) || first.Username != ServerTokenUser || len(first.Password) == 0 {
		t.Fatalf("new token %+v", first)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", st.Mode().Perm())
	}

	// A restart reuses the stored token.
	again, created, err := EnsureClusterToken(path, "", ca, "server-ca.crt")
	if err != nil || created || again != first {
		t.Fatalf("restart: %+v created %v %v, want the stored %+v", again, created, err, first)
	}

	// A bare secret becomes this cluster's K10 token.
	given, _, err := EnsureClusterToken(path, "my-secret", ca, "server-ca.crt")
	if err != nil || given.Password != "my-secret" || given.Username != ServerTokenUser || !given.VerifyCA(ca) {
		t.Fatalf("bare secret: %+v, %v", given, err)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != given.String() {
		t.Fatalf("stored %q, want %q", b, given.String())
	}

	refused := map[string]struct{ token, says string }{
		"another cluster's token": {"K10" + strings.Repeat("ab", 32) + "::server:secret", "issued for another cluster"},
		"the agent-only token":    {"K10" + CAHash(ca) + "::node:secret", "agent-only token"},
		"a malformed token":       {"K10zz::server:secret", "invalid --token"},
	}
	for name, tc := range refused {
		if _, _, err := EnsureClusterToken(path, tc.token, ca, "server-ca.crt"); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.says)
		}
	}

	if err := os.WriteFile(path, []byte("K10garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureClusterToken(path, "", ca, "server-ca.crt"); err == nil || !strings.Contains(err.Error(), "is damaged") {
		t.Fatalf("damaged stored token: %v", err)
	}
}

func TestEnsureAgentToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent-token")
	cluster := Token{CAHash: strings.Repeat("cd", 32), Username: ServerTokenUser, Password: "s"}
	tok, err := EnsureAgentToken(path, "agent-secret", cluster)
	if err != nil || tok.Username != AgentTokenUser || tok.CAHash != cluster.CAHash {
		t.Fatalf("agent token %+v, %v", tok, err)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != tok.String() {
		t.Fatalf("stored %q", b)
	}
	// Without --agent-token the stored one goes, so it no longer admits.
	if tok, err := EnsureAgentToken(path, "", cluster); err != nil || tok != nil {
		t.Fatalf("no agent token: %v %v", tok, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the old agent token is still stored: %v", err)
	}
}
