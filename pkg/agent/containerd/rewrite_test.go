package containerd

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestRewritePath(t *testing.T) {
	rules := rewriteRules(map[string]string{
		"^rancher/(.*)": "mirrorproject/rancher-images/$1",
		"^library/(.*)": "hub/$1",
	})
	for in, want := range map[string]string{
		"/v2/rancher/coredns/manifests/v1":            "/v2/mirrorproject/rancher-images/coredns/manifests/v1",
		"/v2/rancher/a/b/blobs/sha256:abc":            "/v2/mirrorproject/rancher-images/a/b/blobs/sha256:abc",
		"/v2/library/nginx/manifests/sha256:0123":     "/v2/hub/nginx/manifests/sha256:0123",
		"/v2/rancher/x/tags/list":                     "/v2/mirrorproject/rancher-images/x/tags/list",
		"/v2/other/rancher/manifests/latest":          "/v2/other/rancher/manifests/latest",
		"/v2/":                                        "/v2/",
		"/v2/manifests/manifests/manifests/manifests": "/v2/manifests/manifests/manifests/manifests",
	} {
		if got := rewritePath(rules, in); got != want {
			t.Errorf("rewritePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAPIRoot(t *testing.T) {
	for in, want := range map[string]string{
		"https://mirror.example":            "https://mirror.example/v2",
		"https://mirror.example/":           "https://mirror.example/v2",
		"http://10.0.0.1:5000/prefix":       "http://10.0.0.1:5000/prefix/v2",
		"https://mirror.example/prefix/v2/": "https://mirror.example/prefix/v2",
	} {
		u, err := apiRoot(in)
		if err != nil || u.String() != want {
			t.Errorf("apiRoot(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
}

// TestRewriteProxy runs the proxies of a registries file in front of a
// stand-in mirror and checks what reaches the mirror, and what containerd
// is told in hosts.toml and the credentials.
func TestRewriteProxy(t *testing.T) {
	var seen []string
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" auth="+r.Header.Get("Authorization"))
		if strings.Contains(r.URL.Path, "/blobs/") {
			// Registries redirect blobs, often with a relative Location.
			w.Header().Set("Location", "/storage/blob1")
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		w.Header().Set("Docker-Content-Digest", "sha256:feed")
		io.WriteString(w, "manifest")
	}))
	defer mirror.Close()

	dir := t.TempDir()
	path := filepath.Join(dir, "registries.yaml")
	writeRegistries(t, path, `mirrors:
  docker.io:
    endpoint: ["`+mirror.URL+`/prefix"]
    rewrite:
      "^rancher/(.*)": "mirrorproject/rancher-images/$1"
  quay.io:
    endpoint: ["https://plain.example"]
configs:
  `+strings.TrimPrefix(mirror.URL, "http://")+`:
    auth: {username: u, password: p}
`)
	regs, err := LoadRegistries(path)
	if err != nil {
		t.Fatal(err)
	}
	proxies, err := startRewriteProxies(regs)
	if err != nil {
		t.Fatal(err)
	}
	defer proxies.Close()
	proxy, ok := regs.proxied[proxyKey("docker.io", mirror.URL+"/prefix")]
	if !ok || len(regs.proxied) != 1 {
		t.Fatalf("proxied endpoints %v", regs.proxied)
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, proxy+"/v2/rancher/coredns/manifests/v1?ns=docker.io", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "manifest" || resp.Header.Get("Docker-Content-Digest") != "sha256:feed" {
		t.Errorf("manifest through the proxy: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, err = client.Head(proxy + "/v2/rancher/coredns/blobs/sha256:abc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || loc != mirror.URL+"/storage/blob1" {
		t.Errorf("blob redirect through the proxy: %d Location %q, want the mirror's absolute URL", resp.StatusCode, loc)
	}
	resp, err = client.Post(proxy+"/v2/rancher/coredns/blobs/uploads/", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("push through the proxy: %d", resp.StatusCode)
	}
	want := []string{
		"GET /prefix/v2/mirrorproject/rancher-images/coredns/manifests/v1?ns=docker.io auth=Bearer tok",
		"HEAD /prefix/v2/mirrorproject/rancher-images/coredns/blobs/sha256:abc auth=",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("the mirror saw:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}

	// containerd is sent to the proxy, with the mirror's credentials.
	certs := filepath.Join(dir, "certs.d")
	if err := writeHostsDir(certs, regs, path, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(certs, "docker.io", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("hosts.toml is not TOML: %v\n%s", err, b)
	}
	if hosts := doc["host"].(map[string]any); len(hosts) != 1 || hosts[proxy+"/v2"] == nil || doc["server"] != "https://registry-1.docker.io" {
		t.Errorf("docker.io/hosts.toml:\n%s", b)
	}
	auths := regs.criAuths()
	if auths[strings.TrimPrefix(proxy, "http://")] == nil {
		t.Errorf("no credentials for the proxy's host in %v", auths)
	}
}

func TestNoDefaultEndpoint(t *testing.T) {
	r := &Registries{Mirrors: map[string]Mirror{
		"docker.io":      {Endpoints: []string{"https://m1.example", "https://m2.example:5000"}},
		"r.example:5000": {Endpoints: []string{"https://m3.example"}},
	}}
	files := r.hostsFiles("src", true)
	want := `# Generated by skiff from src; changes here are overwritten.
# --disable-default-registry-endpoint: the last mirror stands in for the registry.
server = "https://m2.example:5000"
capabilities = ["pull", "resolve"]

[host."https://m1.example"]
  capabilities = ["pull", "resolve"]
`
	if got := string(files["docker.io"]); got != want {
		t.Errorf("docker.io/hosts.toml:\n%s\nwant:\n%s", got, want)
	}
	var doc map[string]any
	if err := toml.Unmarshal(files["r.example:5000"], &doc); err != nil || doc["server"] != "https://m3.example" || doc["host"] != nil {
		t.Errorf("r.example:5000/hosts.toml (%v):\n%s", err, files["r.example:5000"])
	}
	// Without the flag the registry itself comes last.
	if got := string(r.hostsFiles("src", false)["r.example:5000"]); !strings.Contains(got, `server = "https://r.example:5000"`) {
		t.Errorf("without --disable-default-registry-endpoint:\n%s", got)
	}
}
