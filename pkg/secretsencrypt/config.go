// Package secretsencrypt owns the encryption of Secrets at rest: the
// kube-apiserver EncryptionConfiguration file skiff writes in the server's
// credentials dir, the key inside it, and the stages of a key rotation
// (start -> prepared -> rotated -> reencrypted) that `skiff secrets-encrypt`
// walks through while the apiserver reloads the file on its own.
//
// The file is the single source of truth: one secretbox provider whose first
// key encrypts new writes and whose other keys only decrypt, then identity{}
// so values written before encryption was turned on stay readable. A small
// state file next to it only tells "start" from "reencrypted", which a
// one-key config cannot show by itself.
package secretsencrypt

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// File names in the server's credentials dir (<data-dir>/server/cred).
const (
	ConfigFile = "encryption-config.json"
	stateFile  = "encryption-state.json"
	lockFile   = ".encryption-config.lock"
)

// KeySize is the length of a secretbox key in bytes.
const KeySize = 32

// Provider is the encryption provider of the keys skiff generates:
// secretbox (XSalsa20 and Poly1305), which the Kubernetes docs rank above
// aescbc. A file with an aescbc provider instead is read and rotated too.
const Provider = "secretbox"

// resource is what gets encrypted.
const resource = "secrets"

// Stage is where the config is in a key rotation.
type Stage string

const (
	// StageStart: one key, as created when encryption was turned on.
	StageStart Stage = "start"
	// StagePrepared: a new key was added after the write key; it decrypts
	// but does not encrypt yet.
	StagePrepared Stage = "prepared"
	// StageRotated: the new key encrypts; the old one still decrypts.
	StageRotated Stage = "rotated"
	// StageReencrypted: every Secret was rewritten under the write key and
	// the other keys were removed.
	StageReencrypted Stage = "reencrypted"
)

// Command is how the messages name the CLI.
const Command = "skiff secrets-encrypt"

// Files are the encryption files of one server.
type Files struct {
	// Dir is the server's credentials dir, <data-dir>/server/cred.
	Dir string
}

// ConfigPath is the file passed to --encryption-provider-config.
func (f Files) ConfigPath() string { return filepath.Join(f.Dir, ConfigFile) }

func (f Files) statePath() string { return filepath.Join(f.Dir, stateFile) }

// Paths are the files that hold the keys and their stage: what every
// server of a cluster must share.
func (f Files) Paths() []string { return []string{f.ConfigPath(), f.statePath()} }

// Config is the parsed encryption config file.
type Config struct {
	// Provider is "secretbox" or "aescbc".
	Provider string
	// Keys in file order: Keys[0] encrypts, all decrypt.
	Keys []apiserverv1.Key
	// Hash is the apiserver's hash of the file's bytes ("sha256:<hex>"),
	// the value its last_config_info metric reports once loaded.
	Hash string
}

// KeyNames lists the key names in file order.
func (c *Config) KeyNames() []string {
	names := make([]string, len(c.Keys))
	for i, k := range c.Keys {
		names[i] = k.Name
	}
	return names
}

// WriteKey is the name of the key new writes are encrypted with.
func (c *Config) WriteKey() string { return c.Keys[0].Name }

// Status is what `skiff secrets-encrypt status` reports about the files.
type Status struct {
	Enabled bool
	Path    string
	Stage   Stage
	*Config
}

// Ensure prepares the encryption config for a starting server and returns
// its path, or "" when Secrets stay unencrypted. With enabled and no file,
// it creates one with a fresh key; an existing file is never replaced, so a
// restart keeps the keys. An existing file is used even when enabled is
// false (the flag was dropped): without it the apiserver could not read the
// Secrets already encrypted, so once on, encryption stays on; warn tells the
// caller to say so.
func (f Files) Ensure(enabled bool) (path string, warn string, err error) {
	cfg, err := f.read()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !enabled {
			return "", "", nil
		}
		if err := os.MkdirAll(f.Dir, 0o700); err != nil {
			return "", "", fmt.Errorf("create %s: %w", f.Dir, err)
		}
		key, err := newKey(Provider, 1)
		if err != nil {
			return "", "", err
		}
		cfg = &Config{Provider: Provider, Keys: []apiserverv1.Key{key}}
		if err := f.write(cfg, StageStart); err != nil {
			return "", "", err
		}
		return f.ConfigPath(), "", nil
	case err != nil:
		return "", "", fmt.Errorf("%w; restore the file from a backup: the Secrets encrypted with its keys cannot be read without it", err)
	}
	// Secret material: keep it private even if someone loosened the mode.
	if err := os.Chmod(f.ConfigPath(), 0o600); err != nil {
		return "", "", fmt.Errorf("chmod %s: %w", f.ConfigPath(), err)
	}
	if !enabled {
		warn = fmt.Sprintf("secrets encryption stays on although --secrets-encryption is not set: %s exists and the Secrets encrypted with its keys must stay readable", f.ConfigPath())
	}
	return f.ConfigPath(), warn, nil
}

// Status reads the files; Enabled is false when no config exists.
func (f Files) Status() (*Status, error) {
	cfg, err := f.read()
	if errors.Is(err, fs.ErrNotExist) {
		return &Status{Path: f.ConfigPath()}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Status{Enabled: true, Path: f.ConfigPath(), Stage: f.stage(cfg), Config: cfg}, nil
}

// Prepare adds a new key after the write key, so the apiserver can decrypt
// with it before anything is encrypted with it.
func (f Files) Prepare() (*Status, error) {
	unlock, err := f.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := f.enabled()
	if err != nil {
		return nil, err
	}
	switch st.Stage {
	case StageStart, StageReencrypted:
	case StagePrepared:
		return nil, fmt.Errorf("stage is %s already (key %s waits to become the write key); run %q next", st.Stage, st.Keys[1].Name, Command+" rotate")
	default:
		return nil, outOfOrder(st.Stage)
	}
	key, err := newKey(st.Provider, nextKeyNumber(st.Keys))
	if err != nil {
		return nil, err
	}
	cfg := &Config{Provider: st.Provider, Keys: []apiserverv1.Key{st.Keys[0], key}}
	if err := f.write(cfg, StagePrepared); err != nil {
		return nil, err
	}
	return f.Status()
}

// Rotate makes the prepared key the write key; the old one still decrypts.
func (f Files) Rotate() (*Status, error) {
	unlock, err := f.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := f.enabled()
	if err != nil {
		return nil, err
	}
	if st.Stage != StagePrepared {
		return nil, outOfOrder(st.Stage)
	}
	cfg := &Config{Provider: st.Provider, Keys: []apiserverv1.Key{st.Keys[1], st.Keys[0]}}
	if err := f.write(cfg, StageRotated); err != nil {
		return nil, err
	}
	return f.Status()
}

// CheckReencrypt (under Lock) tells whether reencrypt may run now: after rotate, or at
// start or after an earlier reencrypt (to encrypt Secrets written before
// encryption was turned on), never while a prepared key is not yet used.
func (f Files) CheckReencrypt() (*Status, error) {
	st, err := f.enabled()
	if err != nil {
		return nil, err
	}
	if st.Stage == StagePrepared {
		return nil, outOfOrder(st.Stage)
	}
	return st, nil
}

// Finish (under Lock) drops every key but the write key once all Secrets are stored
// under it. hash is the config the rewrite ran against: a file changed since
// is left alone.
func (f Files) Finish(hash string) (*Status, error) {
	st, err := f.enabled()
	if err != nil {
		return nil, err
	}
	if st.Hash != hash {
		return nil, fmt.Errorf("%s changed while the Secrets were rewritten; run %q again", st.Path, Command+" reencrypt")
	}
	cfg := &Config{Provider: st.Provider, Keys: st.Keys[:1]}
	if err := f.write(cfg, StageReencrypted); err != nil {
		return nil, err
	}
	return f.Status()
}

// Lock keeps two secrets-encrypt commands from changing the files at once;
// it fails at once, rather than waiting, when another one holds it.
func (f Files) Lock() (unlock func(), err error) {
	if _, err := os.Stat(f.Dir); err != nil {
		return nil, fmt.Errorf("no server credentials dir at %s (%v): run this on the server, as root, with its --data-dir", f.Dir, unwrapPath(err))
	}
	file, err := os.OpenFile(filepath.Join(f.Dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		file.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.New("another secrets-encrypt command is running on this server; wait for it to finish")
		}
		return nil, fmt.Errorf("lock %s: %w", file.Name(), err)
	}
	return func() { file.Close() }, nil
}

// outOfOrder names the stage and the command to run next.
func outOfOrder(stage Stage) error {
	switch stage {
	case StagePrepared:
		return fmt.Errorf("stage is %s; run %q next", stage, Command+" rotate")
	case StageRotated:
		return fmt.Errorf("stage is %s; run %q next", stage, Command+" reencrypt")
	default:
		return fmt.Errorf("stage is %s; run %q first", stage, Command+" prepare")
	}
}

func (f Files) enabled() (*Status, error) {
	st, err := f.Status()
	if err != nil {
		return nil, err
	}
	if !st.Enabled {
		return nil, fmt.Errorf("secrets encryption is off (no %s); start the server with --secrets-encryption first", st.Path)
	}
	return st, nil
}

// state is the content of the state file.
type state struct {
	Stage Stage `json:"stage"`
	// ConfigHash ties the stage to one content of the config file: after a
	// crash between the two writes the stage is derived from the keys.
	ConfigHash string `json:"configHash"`
}

// stage returns the recorded stage of cfg, or derives it from the keys:
// two keys are prepared while the write key is the older one, rotated once
// it is the newer one.
func (f Files) stage(cfg *Config) Stage {
	if data, err := os.ReadFile(f.statePath()); err == nil {
		var s state
		if json.Unmarshal(data, &s) == nil && s.ConfigHash == cfg.Hash && s.Stage != "" {
			return s.Stage
		}
	}
	if len(cfg.Keys) == 1 {
		return StageStart
	}
	if keyNumber(cfg.Keys[0].Name) > keyNumber(cfg.Keys[1].Name) {
		return StageRotated
	}
	return StagePrepared
}

// Render produces the file content for cfg.
func Render(cfg *Config) ([]byte, error) {
	provider := apiserverv1.ProviderConfiguration{}
	keys := append([]apiserverv1.Key(nil), cfg.Keys...)
	switch cfg.Provider {
	case "secretbox":
		provider.Secretbox = &apiserverv1.SecretboxConfiguration{Keys: keys}
	case "aescbc":
		provider.AESCBC = &apiserverv1.AESConfiguration{Keys: keys}
	default:
		return nil, fmt.Errorf("unsupported encryption provider %q", cfg.Provider)
	}
	doc := apiserverv1.EncryptionConfiguration{
		TypeMeta: metav1.TypeMeta{Kind: "EncryptionConfiguration", APIVersion: apiserverv1.SchemeGroupVersion.String()},
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{resource},
			Providers: []apiserverv1.ProviderConfiguration{provider, {Identity: &apiserverv1.IdentityConfiguration{}}},
		}},
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Parse reads a config file skiff wrote: one resource entry for secrets,
// a secretbox or aescbc provider with at least one key, then identity.
func Parse(data []byte) (*Config, error) {
	var doc apiserverv1.EncryptionConfiguration
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if doc.Kind != "EncryptionConfiguration" || doc.APIVersion != apiserverv1.SchemeGroupVersion.String() {
		return nil, fmt.Errorf("kind %q apiVersion %q, want EncryptionConfiguration %s", doc.Kind, doc.APIVersion, apiserverv1.SchemeGroupVersion)
	}
	if len(doc.Resources) != 1 || len(doc.Resources[0].Resources) != 1 || doc.Resources[0].Resources[0] != resource {
		return nil, errors.New("want exactly one resources entry, for secrets")
	}
	providers := doc.Resources[0].Providers
	if len(providers) != 2 || providers[1].Identity == nil {
		return nil, errors.New("want two providers, a secretbox or aescbc one and identity last")
	}
	cfg := &Config{Hash: Hash(data)}
	switch p := providers[0]; {
	case p.Secretbox != nil && p.AESCBC == nil:
		cfg.Provider, cfg.Keys = "secretbox", p.Secretbox.Keys
	case p.AESCBC != nil && p.Secretbox == nil:
		cfg.Provider, cfg.Keys = "aescbc", p.AESCBC.Keys
	default:
		return nil, errors.New("the first provider must be secretbox or aescbc")
	}
	if len(cfg.Keys) == 0 || len(cfg.Keys) > 2 {
		return nil, fmt.Errorf("%d keys, want 1 or 2", len(cfg.Keys))
	}
	for _, k := range cfg.Keys {
		secret, err := base64.StdEncoding.DecodeString(k.Secret)
		if err != nil || len(secret) != KeySize {
			return nil, fmt.Errorf("key %q is not %d base64-encoded bytes", k.Name, KeySize)
		}
	}
	return cfg, nil
}

// Hash is the apiserver's hash of an encryption config file's content.
func Hash(data []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(data)) }

func (f Files) read() (*Config, error) {
	data, err := os.ReadFile(f.ConfigPath())
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("encryption config %s: %w", f.ConfigPath(), err)
	}
	return cfg, nil
}

// write replaces the config atomically, then records the stage.
func (f Files) write(cfg *Config, stage Stage) error {
	data, err := Render(cfg)
	if err != nil {
		return err
	}
	if err := fileutil.WriteAtomic(f.ConfigPath(), data, 0o600); err != nil {
		return err
	}
	s, err := json.Marshal(state{Stage: stage, ConfigHash: Hash(data)})
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(f.statePath(), append(s, '\n'), 0o600)
}

// newKey makes key number n: KeySize random bytes, named like k3s names
// its keys (aescbckey-..., secretboxkey-...) with a number that grows with
// each rotation.
func newKey(provider string, n int) (apiserverv1.Key, error) {
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return apiserverv1.Key{}, fmt.Errorf("generate encryption key: %w", err)
	}
	return apiserverv1.Key{Name: provider + "key-" + strconv.Itoa(n), Secret: base64.StdEncoding.EncodeToString(secret)}, nil
}

// keyNumber is the number at the end of a key name, 0 if there is none.
func keyNumber(name string) int {
	i := strings.LastIndexByte(name, '-')
	n, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return 0
	}
	return n
}

func nextKeyNumber(keys []apiserverv1.Key) int {
	n := 0
	for _, k := range keys {
		n = max(n, keyNumber(k.Name))
	}
	return n + 1
}

// unwrapPath drops the path from an *os.PathError, which the caller names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
