package bootstrap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrWrongToken is what opening material with another token than the one
// it was sealed with gives; GCM cannot tell that apart from altered
// material, so the message names both.
var ErrWrongToken = errors.New("the token does not match the one the bootstrap material was stored with, or the stored material was altered; pass the cluster's token (skiff token on one of its servers)")

const (
	envelopeVersion = 1
	kdfName         = "pbkdf2-sha256"
	saltBytes       = 16
	keyBytes        = 32 // AES-256
	// maxIterations bounds the work an envelope can ask of Open.
	maxIterations = 10_000_000
)

// kdfIterations is OWASP's current recommendation for PBKDF2-HMAC-SHA256.
// The token is usually 32 random bytes, but a user may choose a weaker one,
// and the sealed material sits in a datastore others may read. Tests lower
// it.
var kdfIterations = 600_000

// envelope is the sealed form. Its version and KDF parameters travel with
// it so that later versions can raise the cost and still open old material.
type envelope struct {
	Version    int    `json:"version"`
	KDF        string `json:"kdf"`
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// additionalData binds the ciphertext to the envelope format, so it cannot
// be replayed under another version's rules.
func additionalData(version int) []byte {
	return fmt.Appendf(nil, "skiff bootstrap material v%d", version)
}

// Seal encrypts m with a key derived from passphrase (the cluster token's
// password).
func Seal(m Material, passphrase string) ([]byte, error) {
	if passphrase == "" {
		return nil, errors.New("seal bootstrap material: the token's password is empty")
	}
	plain, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("seal bootstrap material: %w", err)
	}
	env := envelope{Version: envelopeVersion, KDF: kdfName, Iterations: kdfIterations, Salt: make([]byte, saltBytes)}
	if _, err := rand.Read(env.Salt); err != nil {
		return nil, fmt.Errorf("seal bootstrap material: %w", err)
	}
	aead, err := newAEAD(passphrase, env.Salt, env.Iterations)
	if err != nil {
		return nil, fmt.Errorf("seal bootstrap material: %w", err)
	}
	env.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(env.Nonce); err != nil {
		return nil, fmt.Errorf("seal bootstrap material: %w", err)
	}
	env.Ciphertext = aead.Seal(nil, env.Nonce, plain, additionalData(env.Version))
	return json.Marshal(env)
}

// Open decrypts what Seal made with the same passphrase; another
// passphrase gives ErrWrongToken.
func Open(b []byte, passphrase string) (Material, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("open bootstrap material: it is not a sealed envelope: %w", err)
	}
	switch {
	case env.Version != envelopeVersion:
		return nil, fmt.Errorf("open bootstrap material: envelope version %d is not supported by this skiff (it reads version %d); upgrade skiff to the version of the server that stored it", env.Version, envelopeVersion)
	case env.KDF != kdfName:
		return nil, fmt.Errorf("open bootstrap material: key derivation %q is not supported", env.KDF)
	case env.Iterations < 1 || env.Iterations > maxIterations:
		return nil, fmt.Errorf("open bootstrap material: %d key derivation iterations is out of range", env.Iterations)
	case len(env.Salt) == 0:
		return nil, errors.New("open bootstrap material: the envelope has no salt")
	}
	aead, err := newAEAD(passphrase, env.Salt, env.Iterations)
	if err != nil {
		return nil, fmt.Errorf("open bootstrap material: %w", err)
	}
	if len(env.Nonce) != aead.NonceSize() {
		return nil, errors.New("open bootstrap material: the envelope's nonce has the wrong size")
	}
	plain, err := aead.Open(nil, env.Nonce, env.Ciphertext, additionalData(env.Version))
	if err != nil {
		return nil, ErrWrongToken
	}
	var m Material
	// The decoder's error would quote the decrypted bytes.
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, errors.New("open bootstrap material: the decrypted material is malformed")
	}
	for name := range m {
		if err := checkPath(name); err != nil {
			return nil, fmt.Errorf("open bootstrap material: %w", err)
		}
	}
	return m, nil
}

func newAEAD(passphrase string, salt []byte, iterations int) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, passphrase, salt, iterations, keyBytes)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
