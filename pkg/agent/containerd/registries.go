package containerd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Registries is the content of registries.yaml, in the format of k3s's file
// of the same name.
type Registries struct {
	// Mirrors maps a registry host ("docker.io", "registry.example:5000",
	// or "*" for every registry) to the endpoints tried before it.
	Mirrors map[string]Mirror `yaml:"mirrors,omitempty"`
	// Configs maps a registry or mirror host to its credentials and TLS.
	Configs map[string]RegistryConfig `yaml:"configs,omitempty"`

	// proxied maps proxyKey(mirror, endpoint) to the URL of the rewrite
	// proxy that stands in for that endpoint (rewrite.go).
	proxied map[string]string
}

// Mirror lists the endpoints to pull a registry's images from.
type Mirror struct {
	Endpoints []string `yaml:"endpoint,omitempty"`
	// Rewrites maps a repository regexp to its replacement ($1 for its
	// first group), applied to pulls from Endpoints, not from the registry
	// itself. containerd 2.4 has no equivalent, so skiff's rewrite proxies
	// apply them (rewrite.go).
	Rewrites map[string]string `yaml:"rewrite,omitempty"`
}

// RegistryConfig holds what is needed to talk to one host.
type RegistryConfig struct {
	Auth *RegistryAuth `yaml:"auth,omitempty"`
	TLS  *RegistryTLS  `yaml:"tls,omitempty"`
}

// RegistryAuth is a username and password, a base64 "user:password" Auth,
// or an identity token.
type RegistryAuth struct {
	Username      string `yaml:"username,omitempty"`
	Password      string `yaml:"password,omitempty"`
	Auth          string `yaml:"auth,omitempty"`
	IdentityToken string `yaml:"identity_token,omitempty"`
	// Token is accepted as a shorter name for IdentityToken.
	Token string `yaml:"token,omitempty"`
}

// RegistryTLS configures TLS for one host. Paths must be absolute.
type RegistryTLS struct {
	CAFile             string `yaml:"ca_file,omitempty"`
	CertFile           string `yaml:"cert_file,omitempty"`
	KeyFile            string `yaml:"key_file,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
}

// LoadRegistries reads and checks a registries file. A missing file yields
// an empty configuration.
func LoadRegistries(path string) (*Registries, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Registries{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registries file: %w", err)
	}
	var r Registries
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key must not be silently ignored
	if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("registries file %s: %s; fix or remove the file", path, yamlError(err))
	}
	if err := r.normalize(); err != nil {
		return nil, fmt.Errorf("registries file %s: %w; fix or remove the file", path, err)
	}
	return &r, nil
}

var unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

// yamlError rewrites the YAML decoder's message in the terms of the file:
// "line 3: unknown setting "endpoints"" instead of Go type names.
func yamlError(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n  ")
	s = strings.ReplaceAll(s, "\n  ", "; ")
	return unknownFieldRE.ReplaceAllString(s, `unknown setting "$1"`)
}

// normalize validates r and rewrites Configs keys given as URLs to hosts.
func (r *Registries) normalize() error {
	for _, name := range sortedKeys(r.Mirrors) {
		if name != "*" && !validHost(name) {
			return fmt.Errorf("mirrors.%q: not a registry host name like docker.io or registry.example:5000", name)
		}
		m := r.Mirrors[name]
		for i, ep := range m.Endpoints {
			u, err := url.Parse(ep)
			if err != nil || u.Host == "" || u.Opaque != "" {
				return fmt.Errorf("mirrors.%q.endpoint[%d] %q: not a URL", name, i, ep)
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				return fmt.Errorf("mirrors.%q.endpoint[%d] %q: not an http:// or https:// URL", name, i, ep)
			}
		}
		for _, re := range sortedKeys(m.Rewrites) {
			if _, err := regexp.Compile(re); err != nil {
				return fmt.Errorf("mirrors.%q.rewrite %q: not a regular expression: %v", name, re, err)
			}
		}
	}
	configs := make(map[string]RegistryConfig, len(r.Configs))
	for _, key := range sortedKeys(r.Configs) {
		host := key
		if strings.Contains(key, "://") {
			if u, err := url.Parse(key); err == nil {
				host = u.Host
			}
		}
		if !validHost(host) {
			return fmt.Errorf("configs.%q: not a registry host name like registry.example:5000", key)
		}
		if _, dup := configs[host]; dup {
			return fmt.Errorf("configs.%q: host %s is configured twice", key, host)
		}
		c := r.Configs[key]
		if a := c.Auth; a != nil {
			if a.Token != "" && a.IdentityToken != "" {
				return fmt.Errorf("configs.%q.auth: token and identity_token are the same setting; keep one", key)
			}
			if a.Token != "" {
				a.IdentityToken, a.Token = a.Token, ""
			}
		}
		if t := c.TLS; t != nil {
			if (t.CertFile == "") != (t.KeyFile == "") {
				return fmt.Errorf("configs.%q.tls: cert_file and key_file must be given together", key)
			}
			for _, f := range []struct{ name, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
				if f.path == "" {
					continue
				}
				if !filepath.IsAbs(f.path) {
					return fmt.Errorf("configs.%q.tls.%s %q: not an absolute path", key, f.name, f.path)
				}
				if _, err := os.Stat(f.path); err != nil {
					return fmt.Errorf("configs.%q.tls.%s: %v", key, f.name, err)
				}
			}
		}
		configs[host] = c
	}
	r.Configs = configs
	return nil
}

// validHost accepts "name", "name:port", "1.2.3.4:5000" and "[::1]:5000".
func validHost(h string) bool {
	if h == "" || strings.ContainsAny(h, "/@ \t?#") {
		return false
	}
	u, err := url.Parse("https://" + h)
	return err == nil && u.Host == h && u.Hostname() != ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// criAuths returns the CRI plugin's registry.configs table: host -> auth.
func (r *Registries) criAuths() map[string]any {
	out := map[string]any{}
	for host, c := range r.Configs {
		a := c.Auth
		if a == nil {
			continue
		}
		auth := map[string]any{}
		for k, v := range map[string]string{"username": a.Username, "password": a.Password, "auth": a.Auth, "identitytoken": a.IdentityToken} {
			if v != "" {
				auth[k] = v
			}
		}
		if len(auth) > 0 {
			out[host] = map[string]any{"auth": auth}
		}
	}
	// containerd asks for credentials by the host it talks to, which for
	// a mirror with rewrites is its proxy.
	for _, name := range sortedKeys(r.Mirrors) {
		for _, ep := range r.Mirrors[name].Endpoints {
			proxy, ok := r.proxied[proxyKey(name, ep)]
			if !ok {
				continue
			}
			if u, err := url.Parse(ep); err == nil {
				if auth, ok := out[u.Host]; ok {
					out[strings.TrimPrefix(proxy, "http://")] = auth
				}
			}
		}
	}
	// containerd asks for Docker Hub's credentials by the host it talks
	// to, registry-1.docker.io, while users write docker.io.
	if hub, ok := out["docker.io"]; ok {
		if _, set := out["registry-1.docker.io"]; !set {
			out["registry-1.docker.io"] = hub
		}
	}
	return out
}

// hostsFiles renders containerd's hosts directory: a map from directory
// name (a registry host, or "_default" for the "*" mirror) to hosts.toml.
// With noDefault (--disable-default-registry-endpoint) a mirrored registry
// is pulled from its mirrors only.
func (r *Registries) hostsFiles(source string, noDefault bool) map[string][]byte {
	files := map[string][]byte{}
	for _, name := range sortedKeys(r.Mirrors) {
		dir := name
		if name == "*" {
			dir = "_default"
		}
		files[dir] = r.hostsFile(name, r.Mirrors[name].Endpoints, source, noDefault)
	}
	// A registry with only TLS settings still needs a hosts file for them.
	for _, host := range sortedKeys(r.Configs) {
		if _, done := files[host]; done || r.Configs[host].TLS == nil {
			continue
		}
		files[host] = r.hostsFile(host, nil, source, false)
	}
	return files
}

func (r *Registries) hostsFile(registry string, endpoints []string, source string, noDefault bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by skiff from %s; changes here are overwritten.\n", source)
	if noDefault && len(endpoints) > 0 {
		// containerd always tries the root-level server last, the
		// registry's own unless one is named: naming the last mirror
		// there leaves the mirrors as the only endpoints.
		last := endpoints[len(endpoints)-1]
		endpoints = endpoints[:len(endpoints)-1]
		b.WriteString("# --disable-default-registry-endpoint: the last mirror stands in for the registry.\n")
		r.writeHost(&b, registry, last, "")
	} else {
		if server := upstream(registry); server != "" {
			fmt.Fprintf(&b, "server = %s\n", tomlString(server))
		}
		// Root-level settings apply to the server itself; they must come
		// before the first table.
		writeTLS(&b, "", r.Configs[registry].TLS)
	}
	for _, ep := range endpoints {
		r.writeHost(&b, registry, ep, "  ")
	}
	return b.Bytes()
}

// writeHost writes one mirror endpoint: a [host] table, or the root-level
// server when indent is "". A mirror with rewrites is reached through its
// rewrite proxy, which holds the endpoint's TLS settings itself.
func (r *Registries) writeHost(b *bytes.Buffer, registry, ep, indent string) {
	target, settings, note := ep, (*RegistryTLS)(nil), ""
	if proxy, ok := r.proxied[proxyKey(registry, ep)]; ok {
		target = proxy + "/v2"
		note = fmt.Sprintf("%s# %s, through skiff's rewrite proxy\n", indent, ep)
	} else if u, err := url.Parse(ep); err == nil {
		settings = r.Configs[u.Host].TLS
	}
	if indent == "" {
		fmt.Fprintf(b, "%sserver = %s\n", note, tomlString(target))
	} else {
		fmt.Fprintf(b, "\n[host.%s]\n%s", tomlString(target), note)
	}
	// Mirrors serve pulls only; pushes go to the registry itself.
	fmt.Fprintf(b, "%scapabilities = [\"pull\", \"resolve\"]\n", indent)
	writeTLS(b, indent, settings)
}

// upstream is the registry's own server, tried after the mirrors. It is
// left to containerd where containerd's default is smarter: for "*" and for
// localhost, where containerd also tries plain http.
func upstream(registry string) string {
	switch {
	case registry == "*":
		return ""
	case registry == "docker.io":
		return "https://registry-1.docker.io"
	}
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	if host == "localhost" || net.ParseIP(host).IsLoopback() {
		return ""
	}
	return "https://" + registry
}

func writeTLS(b *bytes.Buffer, indent string, t *RegistryTLS) {
	if t == nil {
		return
	}
	if t.CAFile != "" {
		fmt.Fprintf(b, "%sca = [%s]\n", indent, tomlString(t.CAFile))
	}
	if t.CertFile != "" {
		fmt.Fprintf(b, "%sclient = [[%s, %s]]\n", indent, tomlString(t.CertFile), tomlString(t.KeyFile))
	}
	if t.InsecureSkipVerify {
		fmt.Fprintf(b, "%sskip_verify = true\n", indent)
	}
}

// tomlString quotes s as a TOML basic string; JSON's escapes are a subset
// of TOML's.
func tomlString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// writeHostsDir replaces dir with the hosts files of regs, so hosts
// removed from the registries file stop being used.
func writeHostsDir(dir string, regs *Registries, source string, noDefault bool) error {
	files := regs.hostsFiles(source, noDefault)
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".certs.d-")
	if err != nil {
		return fmt.Errorf("write registry hosts: %w", err)
	}
	defer os.RemoveAll(tmp) // no-op after the rename
	for _, name := range sortedKeys(files) {
		if err := os.Mkdir(filepath.Join(tmp, name), 0o700); err != nil {
			return fmt.Errorf("write registry hosts: %w", err)
		}
		// 0600: the files name client keys and may grow credentials.
		if err := os.WriteFile(filepath.Join(tmp, name, "hosts.toml"), files[name], 0o600); err != nil {
			return fmt.Errorf("write registry hosts: %w", err)
		}
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("write registry hosts: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove old registry hosts: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("write registry hosts: %w", err)
	}
	return nil
}
