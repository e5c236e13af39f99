package containerd

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func writeRegistries(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// goodRegistries returns a registries file whose TLS files exist.
func goodRegistries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"ca.crt", "client.crt", "client.key"} {
		writeRegistries(t, filepath.Join(dir, f), "x")
	}
	return strings.NewReplacer("DIR", dir).Replace(`
mirrors:
  docker.io:
    endpoint: ["https://mirror.example:5000", "http://10.0.0.1:5000"]
    rewrite: {"^library/(.*)": "mirrored/$1"}
  "*":
    endpoint: ["https://everything.example"]
configs:
  "mirror.example:5000":
    auth: {username: u, password: p}
    tls: {ca_file: DIR/ca.crt, cert_file: DIR/client.crt, key_file: DIR/client.key}
  "https://private.example":
    auth: {token: abc}
    tls: {insecure_skip_verify: true}
`)
}

func TestLoadRegistries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registries.yaml")
	writeRegistries(t, path, goodRegistries(t))
	r, err := LoadRegistries(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Mirrors["docker.io"].Endpoints; len(got) != 2 || got[0] != "https://mirror.example:5000" {
		t.Errorf("docker.io endpoints %v", got)
	}
	if got := r.Mirrors["docker.io"].Rewrites["^library/(.*)"]; got != "mirrored/$1" {
		t.Errorf("rewrite %q", got)
	}
	if a := r.Configs["mirror.example:5000"].Auth; a == nil || a.Username != "u" || a.Password != "p" {
		t.Errorf("mirror auth %+v", a)
	}
	// URL keys become hosts, and token is identity_token.
	if c, ok := r.Configs["private.example"]; !ok || c.Auth.IdentityToken != "abc" || !c.TLS.InsecureSkipVerify {
		t.Errorf("private.example config %+v", c)
	}
}

func TestLoadRegistriesMissing(t *testing.T) {
	r, err := LoadRegistries(filepath.Join(t.TempDir(), "nope.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Mirrors) != 0 || len(r.Configs) != 0 || len(r.hostsFiles("x", false)) != 0 {
		t.Errorf("missing file gave %+v", r)
	}
}

func TestLoadRegistriesErrors(t *testing.T) {
	for _, c := range []struct {
		name, content, want string
	}{
		{"unknown key", "mirrors:\n  docker.io:\n    endpoints: [\"https://m\"]\n", `line 3: unknown setting "endpoints"`},
		{"unknown top key", "mirror: {}\n", `line 1: unknown setting "mirror"`},
		{"bad url", "mirrors:\n  docker.io:\n    endpoint: [\"::bad\"]\n", `mirrors."docker.io".endpoint[0] "::bad": not a URL; fix or remove the file`},
		{"no scheme", "mirrors:\n  docker.io:\n    endpoint: [\"ftp://m.example\"]\n", `not an http:// or https:// URL`},
		{"bad yaml", "mirrors: [\n", "line 1: did not find expected node content"},
		{"wrong type", "mirrors:\n  docker.io:\n    endpoint: https://m.example\n", "line 3: cannot unmarshal !!str `https:/...` into []string"},
		{"bad host", "mirrors:\n  \"https://docker.io/x\":\n    endpoint: []\n", `mirrors."https://docker.io/x": not a registry host name`},
		{"bad rewrite", "mirrors:\n  docker.io:\n    rewrite: {\"(\": x}\n", `rewrite "(": not a regular expression`},
		{"cert without key", "configs:\n  r.example:\n    tls: {cert_file: /etc/hostname}\n", "cert_file and key_file must be given together"},
		{"relative ca", "configs:\n  r.example:\n    tls: {ca_file: ca.crt}\n", `tls.ca_file "ca.crt": not an absolute path`},
		{"missing ca", "configs:\n  r.example:\n    tls: {ca_file: /nonexistent/ca.crt}\n", "no such file or directory"},
		{"two tokens", "configs:\n  r.example:\n    auth: {token: a, identity_token: b}\n", "token and identity_token are the same setting"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "registries.yaml")
			writeRegistries(t, path, c.content)
			_, err := LoadRegistries(path)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, "registries file "+path+": ") || !strings.HasSuffix(msg, "; fix or remove the file") {
				t.Fatalf("error %q, want it to name the file, contain %q and say how to fix it", msg, c.want)
			}
		})
	}
}

func TestHostsFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "registries.yaml")
	writeRegistries(t, path, goodRegistries(t))
	r, err := LoadRegistries(path)
	if err != nil {
		t.Fatal(err)
	}
	tls := r.Configs["mirror.example:5000"].TLS
	certs := filepath.Join(dir, "certs.d")
	if err := writeHostsDir(certs, r, path, false); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		t.Helper()
		p := filepath.Join(certs, name, "hosts.toml")
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, st.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		var doc map[string]any
		if err := toml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s is not TOML: %v\n%s", p, err, b)
		}
		return string(b)
	}

	want := `# Generated by skiff from ` + path + `; changes here are overwritten.
server = "https://registry-1.docker.io"

[host."https://mirror.example:5000"]
  capabilities = ["pull", "resolve"]
  ca = ["` + tls.CAFile + `"]
  client = [["` + tls.CertFile + `", "` + tls.KeyFile + `"]]

[host."http://10.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
`
	if got := read("docker.io"); got != want {
		t.Errorf("docker.io/hosts.toml:\n%s\nwant:\n%s", got, want)
	}

	want = `# Generated by skiff from ` + path + `; changes here are overwritten.

[host."https://everything.example"]
  capabilities = ["pull", "resolve"]
`
	if got := read("_default"); got != want {
		t.Errorf("_default/hosts.toml:\n%s\nwant:\n%s", got, want)
	}

	// TLS settings of a registry without mirrors apply to the registry.
	want = `# Generated by skiff from ` + path + `; changes here are overwritten.
server = "https://private.example"
skip_verify = true
`
	if got := read("private.example"); got != want {
		t.Errorf("private.example/hosts.toml:\n%s\nwant:\n%s", got, want)
	}

	entries, _ := os.ReadDir(certs)
	if len(entries) != 4 { // docker.io, _default, private.example, mirror.example:5000
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("certs.d holds %v", names)
	}
}

func TestCRIAuths(t *testing.T) {
	r := &Registries{Configs: map[string]RegistryConfig{
		"docker.io":        {Auth: &RegistryAuth{Username: "hub", Password: "pw"}},
		"r.example:5000":   {Auth: &RegistryAuth{IdentityToken: "tok"}},
		"tls-only.example": {TLS: &RegistryTLS{InsecureSkipVerify: true}},
	}}
	got := r.criAuths()
	want := map[string]any{
		"docker.io":            map[string]any{"auth": map[string]any{"username": "hub", "password": "pw"}},
		"registry-1.docker.io": map[string]any{"auth": map[string]any{"username": "hub", "password": "pw"}},
		"r.example:5000":       map[string]any{"auth": map[string]any{"identitytoken": "tok"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("criAuths() = %v, want %v", got, want)
	}
}

func TestUpstream(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io":             "https://registry-1.docker.io",
		"quay.io":               "https://quay.io",
		"registry.example:5000": "https://registry.example:5000",
		"localhost:5000":        "", // containerd's default also tries http
		"127.0.0.1:5000":        "",
		"*":                     "",
	} {
		if got := upstream(in); got != want {
			t.Errorf("upstream(%q) = %q, want %q", in, got, want)
		}
	}
}
