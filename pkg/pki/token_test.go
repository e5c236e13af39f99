package pki

import (
	"regexp"
	"strings"
	"testing"
)

var hex64 = strings.Repeat("ab12", 16)

func TestNewTokenRoundTrip(t *testing.T) {
	bundle := []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
	tok, err := NewToken(bundle, "server")
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if !regexp.MustCompile(`^K10[0-9a-f]{64}::server:[0-9a-f]{64}$`).MatchString(s) {
		t.Fatalf("unexpected token format %q", s)
	}
	if tok.CAHash != CAHash(bundle) {
		t.Error("token hash does not match bundle")
	}
	parsed, err := ParseToken("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if parsed != tok {
		t.Errorf("round trip: got %+v, want %+v", parsed, tok)
	}
	if !parsed.VerifyCA(bundle) {
		t.Error("VerifyCA false for the right bundle")
	}
	if parsed.VerifyCA(append([]byte{}, append(bundle, '\n')...)) {
		t.Error("VerifyCA true for a different bundle")
	}
	other, _ := NewToken(bundle, "server")
	if other.Password == tok.Password {
		t.Error("two tokens share a secret")
	}
	if _, err := NewToken(bundle, ""); err == nil {
		t.Error("NewToken accepted empty username")
	}
}

func TestParseTokenUppercaseHash(t *testing.T) {
	tok, err := ParseToken("K10" + strings.ToUpper(hex64) + "::node:pw")
	if err != nil {
		t.Fatal(err)
	}
	if tok.CAHash != hex64 || tok.Username != "node" || tok.Password != "pw" {
		t.Errorf("got %+v", tok)
	}
}

func TestParseBareToken(t *testing.T) {
	tok, err := ParseToken("s3cret\n")
	if err != nil {
		t.Fatal(err)
	}
	if tok.CAHash != "" || tok.Username != "" || tok.Password != "s3cret" {
		t.Errorf("got %+v", tok)
	}
	if tok.String() != "s3cret" {
		t.Errorf("String() = %q", tok.String())
	}
	if !tok.VerifyCA([]byte("anything")) {
		t.Error("bare token must not pin a CA")
	}
	if _, err := ParseToken("x"); err != nil {
		t.Errorf("one-character bare token rejected: %v", err)
	}
}

func TestParseTokenRejects(t *testing.T) {
	for _, tc := range []struct{ name, token, secret string }{
		{"empty", "", ""},
		{"only whitespace", " \n", ""},
		{"short hash", "K10abc::server:x", ""},
		{"short hash with secret", "K10abc::server:topsecret", "topsecret"},
		{"non-hex hash", "K10" + strings.Repeat("zz", 32) + "::server:topsecret", "topsecret"},
		{"missing separator", "K10" + hex64, ""},
		{"missing separator with tail", "K10" + hex64 + "server:topsecret", "topsecret"},
		{"empty password", "K10" + hex64 + "::server:", ""},
		{"empty username", "K10" + hex64 + "::" + ":topsecretpw", "topsecretpw"},
		{"no colon in credentials", "K10" + hex64 + "::topsecretpw", "topsecretpw"},
		{"space in bare", "has space", "has space"},
		{"space in long bare", "topsecret value", "topsecret"},
		{"space in K10", "K10" + hex64 + "::server:top secret", "top secret"},
		{"colon in bare", "a:b", "a:b"},
		{"colon in long bare", "topsecret:value", "topsecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseToken(tc.token)
			if err == nil {
				t.Fatalf("ParseToken(%q) succeeded", tc.token)
			}
			msg := err.Error()
			if tc.secret != "" && strings.Contains(msg, tc.secret) {
				t.Errorf("error %q leaks the secret", msg)
			}
			if trimmed := strings.TrimSpace(tc.token); trimmed != "" && strings.Contains(msg, trimmed) {
				t.Errorf("error %q echoes the token", msg)
			}
		})
	}
}

func TestVerifyCA(t *testing.T) {
	bundle := []byte("bundle")
	tok := Token{CAHash: CAHash(bundle), Username: "server", Password: "pw"}
	if !tok.VerifyCA(bundle) {
		t.Error("VerifyCA false for matching bundle")
	}
	if tok.VerifyCA([]byte("other")) {
		t.Error("VerifyCA true for other bundle")
	}
	if (Token{Password: "pw"}).VerifyCA([]byte("other")) != true {
		t.Error("bare token VerifyCA must be true")
	}
}
