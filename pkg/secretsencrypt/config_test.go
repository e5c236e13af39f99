package secretsencrypt

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"

	"github.com/skiff-io/skiff/pkg/layout"
)

func newFiles(t *testing.T) Files {
	t.Helper()
	f := Files{Dir: layout.New(t.TempDir()).Server.CredDir}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustEnsure(t *testing.T, f Files, enabled bool) (string, string) {
	t.Helper()
	path, warn, err := f.Ensure(enabled)
	if err != nil {
		t.Fatal(err)
	}
	return path, warn
}

func mustStatus(t *testing.T, f Files) *Status {
	t.Helper()
	st, err := f.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// transformer loads the file with the apiserver's own loader, as
// --encryption-provider-config does.
func transformer(t *testing.T, path string) value.Transformer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg, err := encryptionconfig.LoadEncryptionConfig(ctx, path, true, "test")
	if err != nil {
		t.Fatalf("the apiserver's loader rejects %s: %v", path, err)
	}
	tr := cfg.Transformers[schema.GroupResource{Resource: "secrets"}]
	if tr == nil {
		t.Fatalf("no transformer for secrets in %s", path)
	}
	data, _ := os.ReadFile(path)
	if cfg.EncryptionFileContentHash != Hash(data) {
		t.Fatalf("apiserver hash %s, ours %s", cfg.EncryptionFileContentHash, Hash(data))
	}
	return tr
}

var dataCtx = value.DefaultContext("/registry/secrets/default/s")

func encrypt(t *testing.T, tr value.Transformer, plain string) []byte {
	t.Helper()
	out, err := tr.TransformToStorage(context.Background(), []byte(plain), dataCtx)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decrypt returns the plaintext and whether the apiserver would rewrite it.
func decrypt(t *testing.T, tr value.Transformer, stored []byte) (string, bool, error) {
	t.Helper()
	out, stale, err := tr.TransformFromStorage(context.Background(), stored, dataCtx)
	return string(out), stale, err
}

func TestEnsureCreatesConfig(t *testing.T) {
	f := newFiles(t)
	path, warn := mustEnsure(t, f, true)
	if path != filepath.Join(f.Dir, "encryption-config.json") || warn != "" {
		t.Fatalf("Ensure = %q, %q", path, warn)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o, want 600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	for _, want := range []string{`"apiVersion": "apiserver.config.k8s.io/v1"`, `"kind": "EncryptionConfiguration"`, `"secretbox"`, `"identity": {}`, `"secrets"`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("config lacks %s:\n%s", want, data)
		}
	}
	if strings.Index(string(data), "secretbox") > strings.Index(string(data), "identity") {
		t.Errorf("identity must come after secretbox:\n%s", data)
	}

	st := mustStatus(t, f)
	if !st.Enabled || st.Stage != StageStart || len(st.Keys) != 1 || st.WriteKey() != "secretboxkey-1" {
		t.Fatalf("status %+v %+v", st, st.Config)
	}
	key, err := base64.StdEncoding.DecodeString(st.Keys[0].Secret)
	if err != nil || len(key) != 32 {
		t.Fatalf("key is %d bytes (%v), want 32", len(key), err)
	}

	tr := transformer(t, path)
	stored := encrypt(t, tr, "hunter2-plain")
	if bytes.Contains(stored, []byte("hunter2-plain")) || !bytes.HasPrefix(stored, []byte("k8s:enc:secretbox:v1:secretboxkey-1:")) {
		t.Fatalf("stored value %q", stored)
	}
	// Values written before encryption was on stay readable, and are
	// rewritten by reencrypt.
	if got, stale, err := decrypt(t, tr, []byte("old plaintext")); err != nil || got != "old plaintext" || !stale {
		t.Fatalf("plaintext read back as %q stale=%v err=%v", got, stale, err)
	}
}

func TestEnsureTwoServersGetDifferentKeys(t *testing.T) {
	a, b := newFiles(t), newFiles(t)
	mustEnsure(t, a, true)
	mustEnsure(t, b, true)
	if mustStatus(t, a).Keys[0].Secret == mustStatus(t, b).Keys[0].Secret {
		t.Fatal("two configs got the same key")
	}
}

func TestEnsureRestartKeepsConfig(t *testing.T) {
	f := newFiles(t)
	path, _ := mustEnsure(t, f, true)
	before, _ := os.ReadFile(path)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}

	mustEnsure(t, f, true)
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a restart replaced the encryption config")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o not repaired to 600", fi.Mode().Perm())
	}

	// The flag dropped: the config stays in use, with a warning.
	got, warn := mustEnsure(t, f, false)
	if got != path || !strings.Contains(warn, "stays on") || !strings.Contains(warn, path) {
		t.Fatalf("Ensure(false) = %q, %q", got, warn)
	}
	after, _ = os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("Ensure(false) changed the encryption config")
	}
}

func TestEnsureOffWritesNothing(t *testing.T) {
	f := newFiles(t)
	if path, warn := mustEnsure(t, f, false); path != "" || warn != "" {
		t.Fatalf("Ensure(false) = %q, %q", path, warn)
	}
	if _, err := os.Stat(f.ConfigPath()); !os.IsNotExist(err) {
		t.Fatalf("config written without the flag: %v", err)
	}
	if st := mustStatus(t, f); st.Enabled {
		t.Fatal("status enabled without a config")
	}
	for name, op := range map[string]func() (*Status, error){"prepare": f.Prepare, "rotate": f.Rotate, "reencrypt": f.CheckReencrypt} {
		if _, err := op(); err == nil || !strings.Contains(err.Error(), "--secrets-encryption") {
			t.Errorf("%s with encryption off: %v", name, err)
		}
	}
}

func TestEnsureRejectsBrokenConfig(t *testing.T) {
	f := newFiles(t)
	if err := os.WriteFile(f.ConfigPath(), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.Ensure(true)
	if err == nil || !strings.Contains(err.Error(), f.ConfigPath()) || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("Ensure on a broken file: %v", err)
	}
	if data, _ := os.ReadFile(f.ConfigPath()); string(data) != "{not json" {
		t.Fatal("a broken config was replaced")
	}
}

// TestRotationStages walks start -> prepared -> rotated -> reencrypted ->
// prepared and checks at each stage what the apiserver's own transformers
// make of the file.
func TestRotationStages(t *testing.T) {
	f := newFiles(t)
	path, _ := mustEnsure(t, f, true)
	storedA := encrypt(t, transformer(t, path), "value-a")

	st, err := f.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if st.Stage != StagePrepared || strings.Join(st.KeyNames(), ",") != "secretboxkey-1,secretboxkey-2" {
		t.Fatalf("after prepare: %s %v", st.Stage, st.KeyNames())
	}
	tr := transformer(t, path)
	if s := encrypt(t, tr, "x"); !bytes.HasPrefix(s, []byte("k8s:enc:secretbox:v1:secretboxkey-1:")) {
		t.Fatalf("prepared key used for writing: %q", s)
	}
	if got, stale, err := decrypt(t, tr, storedA); err != nil || got != "value-a" || stale {
		t.Fatalf("prepared: %q stale=%v err=%v", got, stale, err)
	}

	st, err = f.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if st.Stage != StageRotated || strings.Join(st.KeyNames(), ",") != "secretboxkey-2,secretboxkey-1" {
		t.Fatalf("after rotate: %s %v", st.Stage, st.KeyNames())
	}
	tr = transformer(t, path)
	storedB := encrypt(t, tr, "value-b")
	if !bytes.HasPrefix(storedB, []byte("k8s:enc:secretbox:v1:secretboxkey-2:")) {
		t.Fatalf("rotated write: %q", storedB)
	}
	if got, stale, err := decrypt(t, tr, storedA); err != nil || got != "value-a" || !stale {
		t.Fatalf("rotated: old value %q stale=%v err=%v; want readable and stale", got, stale, err)
	}

	st, err = f.Finish(st.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stage != StageReencrypted || strings.Join(st.KeyNames(), ",") != "secretboxkey-2" {
		t.Fatalf("after finish: %s %v", st.Stage, st.KeyNames())
	}
	tr = transformer(t, path)
	if got, _, err := decrypt(t, tr, storedB); err != nil || got != "value-b" {
		t.Fatalf("reencrypted: %q err=%v", got, err)
	}
	if _, _, err := decrypt(t, tr, storedA); err == nil {
		t.Fatal("a removed key still decrypts")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o after rewrites", fi.Mode().Perm())
	}

	// The next rotation numbers on.
	st, err = f.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.KeyNames(), ",") != "secretboxkey-2,secretboxkey-3" {
		t.Fatalf("second prepare: %v", st.KeyNames())
	}
	if _, err := f.CheckReencrypt(); err == nil {
		t.Fatal("reencrypt allowed while prepared")
	}
}

func TestOutOfOrderStagesRefused(t *testing.T) {
	f := newFiles(t)
	mustEnsure(t, f, true)
	refuse := func(name string, op func() (*Status, error), wants ...string) {
		t.Helper()
		before, _ := os.ReadFile(f.ConfigPath())
		_, err := op()
		if err == nil {
			t.Fatalf("%s accepted at stage %s", name, mustStatus(t, f).Stage)
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", name, err, w)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
		if after, _ := os.ReadFile(f.ConfigPath()); !bytes.Equal(before, after) {
			t.Errorf("%s changed the config although refused", name)
		}
	}

	refuse("rotate", f.Rotate, "stage is start", `"skiff secrets-encrypt prepare"`)
	if _, err := f.CheckReencrypt(); err != nil {
		t.Fatalf("reencrypt at start (encrypting old plaintext) refused: %v", err)
	}
	if _, err := f.Prepare(); err != nil {
		t.Fatal(err)
	}
	refuse("prepare", f.Prepare, "stage is prepared", `"skiff secrets-encrypt rotate"`)
	refuse("reencrypt", f.CheckReencrypt, "stage is prepared", `"skiff secrets-encrypt rotate"`)
	if _, err := f.Rotate(); err != nil {
		t.Fatal(err)
	}
	refuse("prepare", f.Prepare, "stage is rotated", `"skiff secrets-encrypt reencrypt"`)
	refuse("rotate", f.Rotate, "stage is rotated", `"skiff secrets-encrypt reencrypt"`)
	st, err := f.CheckReencrypt()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Finish(st.Hash); err != nil {
		t.Fatal(err)
	}
	refuse("rotate", f.Rotate, "stage is reencrypted", `"skiff secrets-encrypt prepare"`)
}

func TestFinishRefusesChangedConfig(t *testing.T) {
	f := newFiles(t)
	mustEnsure(t, f, true)
	old := mustStatus(t, f).Hash
	if _, err := f.Prepare(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Finish(old); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("Finish with a stale hash: %v", err)
	}
	if n := len(mustStatus(t, f).Keys); n != 2 {
		t.Fatalf("%d keys left, want 2", n)
	}
}

// Without the state file (a crash between the two writes) the stage comes
// from the key order.
func TestStageDerivedFromKeys(t *testing.T) {
	f := newFiles(t)
	mustEnsure(t, f, true)
	if _, err := f.Prepare(); err != nil {
		t.Fatal(err)
	}
	os.Remove(f.statePath())
	if st := mustStatus(t, f); st.Stage != StagePrepared {
		t.Fatalf("derived %s, want prepared", st.Stage)
	}
	if _, err := f.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.statePath(), []byte(`{"stage":"prepared","configHash":"sha256:other"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, f); st.Stage != StageRotated {
		t.Fatalf("derived %s, want rotated (state file of another config ignored)", st.Stage)
	}
}

func TestLockExcludesSecondCommand(t *testing.T) {
	f := newFiles(t)
	mustEnsure(t, f, true)
	unlock, err := f.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Prepare(); err == nil || !strings.Contains(err.Error(), "another secrets-encrypt command") {
		t.Fatalf("prepare while locked: %v", err)
	}
	unlock()
	if _, err := f.Prepare(); err != nil {
		t.Fatalf("prepare after unlock: %v", err)
	}
}

func TestLockWithoutServerDir(t *testing.T) {
	f := Files{Dir: layout.New(filepath.Join(t.TempDir(), "nothing")).Server.CredDir}
	if _, err := f.Prepare(); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("prepare without a server: %v", err)
	}
}

func TestParseRejectsForeignConfigs(t *testing.T) {
	good, err := Render(&Config{Provider: "aescbc", Keys: []apiserverv1.Key{{Name: "k", Secret: base64.StdEncoding.EncodeToString(make([]byte, 32))}}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := Parse(good); err != nil || cfg.Provider != "aescbc" {
		t.Fatalf("aescbc config: %v %v", cfg, err)
	}
	for name, doc := range map[string]string{
		"yaml":        "kind: EncryptionConfiguration\n",
		"wrong kind":  `{"kind":"Other","apiVersion":"apiserver.config.k8s.io/v1","resources":[]}`,
		"no identity": `{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[{"secretbox":{"keys":[{"name":"k","secret":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}]}}]}]}`,
		"short key":   `{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[{"secretbox":{"keys":[{"name":"k","secret":"YWJj"}]}},{"identity":{}}]}]}`,
		"unknown key": `{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","extra":1,"resources":[]}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
