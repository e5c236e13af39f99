package bootstrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const passphrase = "0123456789abcdef0123456789abcdef"

func TestSealRoundTrip(t *testing.T) {
	m := testMaterial()
	sealed, err := Seal(m, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range m {
		if bytes.Contains(sealed, data) {
			t.Fatalf("sealed material contains %q in the clear", data)
		}
	}
	opened, err := Open(sealed, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if !opened.Equal(m) {
		t.Fatalf("opened %v, want %v", names(opened), names(m))
	}
	again, err := Seal(m, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again, sealed) {
		t.Fatal("sealing twice gave the same bytes: the salt or nonce is not random")
	}
}

func TestSealUsesTheFullCost(t *testing.T) {
	lowered := kdfIterations
	kdfIterations = 600_000
	defer func() { kdfIterations = lowered }()
	sealed, err := Seal(testMaterial(), passphrase)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(sealed, &env); err != nil {
		t.Fatal(err)
	}
	if env.Version != envelopeVersion || env.KDF != kdfName || env.Iterations != 600_000 || len(env.Salt) != saltBytes {
		t.Fatalf("envelope header %+v", env)
	}
	if _, err := Open(sealed, passphrase); err != nil {
		t.Fatal(err)
	}
}

func TestOpenWithAnotherPassphrase(t *testing.T) {
	sealed, err := Seal(testMaterial(), passphrase)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(sealed, "another-token-password")
	if !errors.Is(err, ErrWrongToken) {
		t.Fatalf("error %v, want ErrWrongToken", err)
	}
	if !strings.Contains(err.Error(), "token does not match") {
		t.Errorf("error %q does not name the cause", err)
	}
	if strings.Contains(err.Error(), passphrase) || strings.Contains(err.Error(), "another-token-password") {
		t.Errorf("error %q quotes a passphrase", err)
	}
}

func TestOpenTamperedEnvelope(t *testing.T) {
	sealed, err := Seal(testMaterial(), passphrase)
	if err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func(*envelope){
		"ciphertext": func(e *envelope) { e.Ciphertext[len(e.Ciphertext)/2] ^= 1 },
		"tag":        func(e *envelope) { e.Ciphertext[len(e.Ciphertext)-1] ^= 1 },
		"nonce":      func(e *envelope) { e.Nonce[0] ^= 1 },
		"salt":       func(e *envelope) { e.Salt[0] ^= 1 },
		"iterations": func(e *envelope) { e.Iterations++ },
		"truncated":  func(e *envelope) { e.Ciphertext = e.Ciphertext[:len(e.Ciphertext)-20] },
	} {
		var env envelope
		if err := json.Unmarshal(sealed, &env); err != nil {
			t.Fatal(err)
		}
		tamper(&env)
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(b, passphrase); !errors.Is(err, ErrWrongToken) {
			t.Errorf("tampered %s: error %v, want ErrWrongToken", name, err)
		}
	}
}

func TestOpenRefusesMalformedEnvelopes(t *testing.T) {
	sealed, err := Seal(testMaterial(), passphrase)
	if err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func(*envelope){
		"version":        func(e *envelope) { e.Version = 2 },
		"kdf":            func(e *envelope) { e.KDF = "md5" },
		"huge cost":      func(e *envelope) { e.Iterations = maxIterations + 1 },
		"no salt":        func(e *envelope) { e.Salt = nil },
		"nonce too long": func(e *envelope) { e.Nonce = append(e.Nonce, 0) },
	} {
		var env envelope
		if err := json.Unmarshal(sealed, &env); err != nil {
			t.Fatal(err)
		}
		tamper(&env)
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(b, passphrase); err == nil || errors.Is(err, ErrWrongToken) {
			t.Errorf("%s: error %v, want a format error", name, err)
		}
	}
	if _, err := Open([]byte("not json"), passphrase); err == nil {
		t.Error("Open of garbage succeeded")
	}
}

func TestSealNeedsAPassphrase(t *testing.T) {
	if _, err := Seal(testMaterial(), ""); err == nil {
		t.Fatal("Seal with an empty passphrase succeeded")
	}
}
