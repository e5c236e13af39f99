package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// tokenPrefix marks the hashed token format; the "10" is a format version so later
// formats can be told apart.
const tokenPrefix = "K10"

// Token is the cluster join token: "K10<sha256 hex of the server CA bundle>::<username>:<password>".
// A bare secret is also valid; it then has no CA hash and no username, so the CA is not pinned.
type Token struct {
	CAHash   string // lowercase hex sha256 (64 chars), or "" for a bare token
	Username string
	Password string
}

// String returns the full K10 form when CAHash is set, else the bare password.
func (t Token) String() string {
	if t.CAHash == "" {
		return t.Password
	}
	return tokenPrefix + t.CAHash + "::" + t.Username + ":" + t.Password
}

// ParseToken parses a join token. Errors never include the token, because they end up
// in logs and the token is a cluster-admin-equivalent secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("token is empty")
	}
	if strings.IndexFunc(s, unicode.IsSpace) >= 0 {
		return Token{}, errors.New("token contains whitespace")
	}
	if !strings.HasPrefix(s, tokenPrefix) {
		if strings.Contains(s, ":") {
			return Token{}, errors.New("token without the K10 prefix must not contain ':'")
		}
		return Token{Password: s}, nil
	}

	rest := s[len(tokenPrefix):]
	hash, creds, found := strings.Cut(rest, "::")
	if !isSHA256Hex(hash) {
		return Token{}, errors.New("token CA hash after K10 is not 64 hexadecimal characters")
	}
	if !found {
		return Token{}, errors.New("token is missing '::' after the CA hash")
	}
	username, password, found := strings.Cut(creds, ":")
	if !found {
		return Token{}, errors.New("token credentials after '::' are not in the form <username>:<password>")
	}
	if username == "" {
		return Token{}, errors.New("token username is empty")
	}
	if password == "" {
		return Token{}, errors.New("token password is empty")
	}
	return Token{CAHash: strings.ToLower(hash), Username: username, Password: password}, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != hex.EncodedLen(sha256.Size) {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// CAHash returns the lowercase hex sha256 of bundle.
func CAHash(bundle []byte) string {
	sum := sha256.Sum256(bundle)
	return hex.EncodeToString(sum[:])
}

// NewToken returns a token pinned to caBundle with a random 32-byte hex secret.
func NewToken(caBundle []byte, username string) (Token, error) {
	if len(caBundle) == 0 {
		return Token{}, errors.New("new token: CA bundle is empty")
	}
	if username == "" || strings.ContainsRune(username, ':') || strings.IndexFunc(username, unicode.IsSpace) >= 0 {
		return Token{}, fmt.Errorf("new token: invalid username %q", username)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Token{}, fmt.Errorf("new token: generate secret: %w", err)
	}
	return Token{CAHash: CAHash(caBundle), Username: username, Password: hex.EncodeToString(secret)}, nil
}

// VerifyCA reports whether bundle hashes to t.CAHash; a bare token pins nothing and
// always verifies. The comparison is constant-time so its duration reveals nothing
// about the expected hash.
func (t Token) VerifyCA(bundle []byte) bool {
	if t.CAHash == "" {
		return true
	}
	want := []byte(strings.ToLower(t.CAHash))
	got := []byte(CAHash(bundle))
	return subtle.ConstantTimeCompare(want, got) == 1
}
