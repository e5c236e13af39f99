package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSecretsEncryptionAtRest starts a server with --secrets-encryption,
// checks that a Secret's value never reaches the SQLite files in the clear,
// rotates the key with prepare, rotate and reencrypt while the server runs,
// and restarts it without the flag, which keeps the encryption on.
func TestSecretsEncryptionAtRest(t *testing.T) {
	s := newServer(t, "--secrets-encryption")
	s.start()
	s.waitReady()
	cred := s.paths().Server.CredDir
	config := filepath.Join(cred, "encryption-config.json")
	assertMode(t, config, 0o600)
	assertMode(t, cred, 0o700)

	value := distinctiveValue(t)
	s.kubectl("create", "secret", "generic", "enc-test", "--from-literal=value="+value)
	if dbContains(t, s, value) {
		t.Fatalf("the Secret's value is stored in the clear in %s", dbDir(s))
	}
	if !dbContains(t, s, "k8s:enc:secretbox:v1:secretboxkey-1:") {
		t.Fatal("no value in the datastore is encrypted with secretboxkey-1")
	}
	assertLines(t, secretsEncrypt(t, s, "status"), "encryption: enabled", "stage: start",
		"write key: secretboxkey-1", "keys: secretboxkey-1, identity", "apiserver loaded this config: yes")

	t.Run("out-of-order stages are refused", func(t *testing.T) {
		code, out := runSkiff(t, time.Minute, "secrets-encrypt", "rotate", "--config", "", "--data-dir", s.dataDir)
		want := `skiff secrets-encrypt rotate: stage is start; run "skiff secrets-encrypt prepare" first`
		if code != 1 || strings.TrimSpace(out) != want {
			t.Fatalf("rotate at start: exit %d: %q, want %q", code, out, want)
		}
	})

	rvBefore := s.kubectl("get", "secret", "enc-test", "-o", "jsonpath={.metadata.resourceVersion}")
	assertLines(t, secretsEncrypt(t, s, "prepare"), "stage prepared: added key secretboxkey-2")
	assertLines(t, secretsEncrypt(t, s, "status"), "stage: prepared", "write key: secretboxkey-1",
		"keys: secretboxkey-1, secretboxkey-2, identity")
	assertLines(t, secretsEncrypt(t, s, "rotate"), "stage rotated: secretboxkey-2 is the write key")
	// The apiserver checks the file once a minute: reencrypt waits for it.
	out := secretsEncrypt(t, s, "reencrypt")
	assertLines(t, out, "waiting for the apiserver to load", "rewriting every Secret under key secretboxkey-2",
		"rewrote ", "stage reencrypted: removed key secretboxkey-1")
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 4 {
		t.Errorf("reencrypt printed %d lines, want one per stage (4):\n%s", n, out)
	}
	assertLines(t, secretsEncrypt(t, s, "status"), "stage: reencrypted", "write key: secretboxkey-2",
		"keys: secretboxkey-2, identity")

	if rv := s.kubectl("get", "secret", "enc-test", "-o", "jsonpath={.metadata.resourceVersion}"); rv == rvBefore {
		t.Errorf("reencrypt did not rewrite the Secret (resourceVersion still %s)", rv)
	}
	assertSecretValue(t, s, "enc-test", value)
	if !dbContains(t, s, "k8s:enc:secretbox:v1:secretboxkey-2:") {
		t.Fatal("no value in the datastore is encrypted with secretboxkey-2 after reencrypt")
	}
	if dbContains(t, s, value) {
		t.Fatal("the Secret's value is in the clear after reencrypt")
	}
	// The apiserver picks up the one-key config too and still reads the Secret.
	eventually(t, 3*time.Minute, func() error {
		if out := secretsEncrypt(t, s, "status"); !strings.Contains(out, "apiserver loaded this config: yes") {
			return fmt.Errorf("status:\n%s", out)
		}
		return nil
	})
	assertSecretValue(t, s, "enc-test", value)

	t.Run("restart without the flag keeps encryption on", func(t *testing.T) {
		before, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		s.stop()
		s.args = slices.DeleteFunc(s.args, func(a string) bool { return a == "--secrets-encryption" })
		s.start()
		s.waitReady()
		if !strings.Contains(s.log()[s.logStart:], "secrets encryption stays on although --secrets-encryption is not set") {
			t.Error("no warning that encryption stays on")
		}
		if after, _ := os.ReadFile(config); !bytes.Equal(before, after) {
			t.Error("the restart changed the encryption config")
		}
		assertSecretValue(t, s, "enc-test", value)
		other := distinctiveValue(t)
		s.kubectl("create", "secret", "generic", "enc-after-restart", "--from-literal=value="+other)
		if dbContains(t, s, other) {
			t.Fatal("a Secret created after the restart is stored in the clear")
		}
	})
}

// TestSecretsEncryptionTurnedOnLater shows the plaintext a server without
// the flag stores, then turns the flag on: new Secrets are encrypted, old
// ones stay readable, and reencrypt rewrites them under the key.
func TestSecretsEncryptionTurnedOnLater(t *testing.T) {
	s := newServer(t)
	s.start()
	s.waitReady()
	value := distinctiveValue(t)
	s.kubectl("create", "secret", "generic", "plain-test", "--from-literal=value="+value)
	if !dbContains(t, s, value) {
		t.Fatal("without --secrets-encryption the Secret's value should be in the datastore as is (is the check blind?)")
	}
	assertLines(t, secretsEncrypt(t, s, "status"), "encryption: disabled")
	code, out := runSkiff(t, time.Minute, "secrets-encrypt", "prepare", "--config", "", "--data-dir", s.dataDir)
	if code != 1 || !strings.Contains(out, "start the server with --secrets-encryption first") {
		t.Fatalf("prepare without encryption: exit %d: %s", code, out)
	}

	s.stop()
	s.args = append(s.args, "--secrets-encryption")
	s.start()
	s.waitReady()
	assertSecretValue(t, s, "plain-test", value)
	newValue := distinctiveValue(t)
	s.kubectl("create", "secret", "generic", "new-test", "--from-literal=value="+newValue)
	if dbContains(t, s, newValue) {
		t.Fatal("a Secret created after turning encryption on is stored in the clear")
	}

	rvBefore := s.kubectl("get", "secret", "plain-test", "-o", "jsonpath={.metadata.resourceVersion}")
	assertLines(t, secretsEncrypt(t, s, "reencrypt"), "rewrote ", "stage reencrypted: no other key to remove")
	if rv := s.kubectl("get", "secret", "plain-test", "-o", "jsonpath={.metadata.resourceVersion}"); rv == rvBefore {
		t.Errorf("reencrypt did not rewrite the plaintext Secret (resourceVersion still %s)", rv)
	}
	assertSecretValue(t, s, "plain-test", value)
	assertSecretValue(t, s, "new-test", newValue)
	assertLines(t, secretsEncrypt(t, s, "status"), "stage: reencrypted", "write key: secretboxkey-1")
}

// secretsEncrypt runs `skiff secrets-encrypt OP` against s and fails the
// test on a non-zero exit.
func secretsEncrypt(t *testing.T, s *server, op string, args ...string) string {
	t.Helper()
	argv := append([]string{"secrets-encrypt", op, "--config", "", "--data-dir", s.dataDir}, args...)
	code, out := runSkiff(t, 5*time.Minute, argv...)
	if code != 0 {
		t.Fatalf("skiff %s: exit %d:\n%s", strings.Join(argv, " "), code, out)
	}
	return out
}

func assertLines(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func assertSecretValue(t *testing.T, s *server, name, want string) {
	t.Helper()
	enc := s.kubectl("get", "secret", name, "-o", "jsonpath={.data.value}")
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil || string(got) != want {
		t.Fatalf("secret %s reads back as %q (%v), want %q", name, got, err, want)
	}
}

// distinctiveValue is a Secret value that appears nowhere else.
func distinctiveValue(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "skiff-e2e-secret-" + hex.EncodeToString(b)
}

func dbDir(s *server) string { return s.paths().Server.DBDir }

// dbContains greps the raw SQLite files, the WAL included: the apiserver
// stores a Secret as protobuf, so an unencrypted value appears as is.
func dbContains(t *testing.T, s *server, needle string) bool {
	t.Helper()
	found := false
	for _, name := range []string{"state.db", "state.db-wal"} {
		data, err := os.ReadFile(filepath.Join(dbDir(s), name))
		if os.IsNotExist(err) && name != "state.db" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		found = found || bytes.Contains(data, []byte(needle))
	}
	return found
}
