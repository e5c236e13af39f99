package pki

import (
	"errors"
	"fmt"
	"os"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// Usernames of a server's own tokens: the cluster token, and the
// agent-only one that joins agents but never servers.
const (
	ServerTokenUser = "server"
	AgentTokenUser  = "node"
)

// EnsureClusterToken settles the cluster token: the one the user gave,
// else the one stored at path, else a new one. It is stored (0600) in its
// full K10 form, so agents can pin the CA whose bundle is caBundle (read
// from caPath). created says a new one was generated.
func EnsureClusterToken(path, given string, caBundle []byte, caPath string) (tok Token, created bool, err error) {
	switch {
	case given != "":
		tok, err = ParseToken(given)
		if err != nil {
			return Token{}, false, fmt.Errorf("invalid --token: %w", err)
		}
		if tok.Username == AgentTokenUser {
			return Token{}, false, errors.New("the --token is an agent-only token: it joins agents, not servers; pass the cluster token (skiff token on the server)")
		}
		if !tok.VerifyCA(caBundle) {
			return Token{}, false, fmt.Errorf("the --token was issued for another cluster: its CA hash does not match %s; pass the bare secret or this cluster's token", caPath)
		}
	default:
		stored, rerr := os.ReadFile(path)
		switch {
		case rerr == nil:
			tok, err = ParseToken(string(stored))
			if err != nil {
				return Token{}, false, fmt.Errorf("stored token %s is damaged (%v); remove it to generate a new one, or pass --token", path, err)
			}
		case errors.Is(rerr, os.ErrNotExist):
			tok, err = NewToken(caBundle, ServerTokenUser)
			if err != nil {
				return Token{}, false, fmt.Errorf("generate token: %w", err)
			}
			created = true
		default:
			return Token{}, false, fmt.Errorf("read token %s: %w", path, rerr)
		}
	}
	tok.CAHash = CAHash(caBundle)
	if tok.Username == "" {
		tok.Username = ServerTokenUser
	}
	if err := fileutil.WriteAtomic(path, []byte(tok.String()+"\n"), 0o600); err != nil {
		return Token{}, false, fmt.Errorf("store token: %w", err)
	}
	return tok, created, nil
}

// EnsureAgentToken stores the agent-only token with secret in its full K10
// form at path, or removes a stored one when secret is empty (the server no
// longer has one).
func EnsureAgentToken(path, secret string, cluster Token) (*Token, error) {
	if secret == "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove old agent token: %w", err)
		}
		return nil, nil
	}
	tok := Token{CAHash: cluster.CAHash, Username: AgentTokenUser, Password: secret}
	if err := fileutil.WriteAtomic(path, []byte(tok.String()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("store agent token: %w", err)
	}
	return &tok, nil
}
