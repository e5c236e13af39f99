package e2e

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/images"
)

// TestNodeExternalAddresses: --node-external-ip, --node-internal-dns and
// --node-external-dns become the Node's ExternalIP, InternalDNS and
// ExternalDNS addresses, stay there through the kubelet's status updates,
// and ServiceLB offers the external IP.
func TestNodeExternalAddresses(t *testing.T) {
	const externalIP = "203.0.113.10"
	s := newNode(t, "--node-external-ip", externalIP,
		"--node-internal-dns", "node.lan", "--node-external-dns", "node.example.com,www.example.com")
	s.start()
	s.waitReady()
	node := s.waitNodeReady(3 * time.Minute)
	internal := node.internalIP()

	want := map[string][]string{
		"InternalIP":  {internal},
		"ExternalIP":  {externalIP},
		"InternalDNS": {"node.lan"},
		"ExternalDNS": {"node.example.com", "www.example.com"},
		"Hostname":    {node.Metadata.Name},
	}
	check := func() error {
		nodes, err := s.nodes()
		if err != nil {
			return err
		}
		if len(nodes) != 1 {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		got := map[string][]string{}
		for _, a := range nodes[0].Status.Addresses {
			got[a.Type] = append(got[a.Type], a.Address)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("node addresses %v, want %v", got, want)
		}
		for _, taint := range nodes[0].Spec.Taints {
			if taint.Key == "node.cloudprovider.kubernetes.io/uninitialized" {
				return fmt.Errorf("the node still has the taint %s", taint.Key)
			}
		}
		return nil
	}
	eventually(t, 2*time.Minute, check)
	// The kubelet reports its status every 10 s; the addresses must
	// survive several reports.
	time.Sleep(25 * time.Second)
	if err := check(); err != nil {
		t.Fatalf("after the kubelet's status updates: %v", err)
	}

	// The apiserver still reaches the kubelet (logs go through it).
	s.kubectl("run", "addr-web", "--image="+webImageV1, "--port=8080", "--labels=app=addr-web")
	s.waitPod("default", "addr-web", 2*time.Minute, podInfo.running)
	eventually(t, time.Minute, func() error {
		_, err := s.kubectlErr("logs", "addr-web")
		return err
	})

	// ServiceLB offers the node's addresses, the external one included.
	s.apply(loadBalancerManifest("addr-lb", "app: addr-web", 8093))
	eventually(t, 3*time.Minute, func() error {
		ips := s.kubectl("get", "service", "addr-lb", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
		if !contains(strings.Fields(ips), externalIP) {
			return fmt.Errorf("LoadBalancer ingress %q lacks the external IP %s", ips, externalIP)
		}
		return nil
	})
	s.kubectl("delete", "service", "addr-lb", "--wait=false")
	s.kubectl("delete", "pod", "addr-web", "--wait=false")
}

// TestRegistryRewriteAndSystemRegistry: a registries.yaml rewrite rule is
// applied to pulls from a local registry mirror; with
// --system-default-registry the addons run from images named under that
// registry without any pull; --disable-default-registry-endpoint leaves
// the registry itself out of containerd's hosts file.
func TestRegistryRewriteAndSystemRegistry(t *testing.T) {
	const systemRegistry = "registry.invalid:5000"
	// An image the node does not have yet (its own config), so the pull
	// fetches content through the rewrite too.
	tarball := filepath.Join(t.TempDir(), "rewritten.tar")
	if _, err := images.WriteFile(tarball, images.Spec{
		Name:       "skiff.test/rewritten:rw",
		Files:      []images.File{{Path: webBinary, Mode: 0o755, Source: testImages(t).binary}},
		Entrypoint: []string{webBinary},
		Cmd:        []string{"serve"},
		Env:        []string{"WEB_VERSION=rewritten"},
	}); err != nil {
		t.Fatal(err)
	}
	reg := newTestRegistry(t, "mirrorproject/rancher-images/web", "rw", tarball)

	registries := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(registries, []byte(`mirrors:
  skiff.test:
    endpoint: ["http://`+reg.addr+`"]
    rewrite:
      "^rancher/(.*)": "mirrorproject/rancher-images/$1"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newNode(t, "--registries", registries, "--system-default-registry", systemRegistry, "--disable-default-registry-endpoint")
	s.start()
	s.waitReady()
	s.waitNodeReady(3 * time.Minute)

	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		})
	}

	run("a rewrite rule maps the repository on the mirror", func(t *testing.T) {
		const image = "skiff.test/rancher/web:rw"
		s.apply(`apiVersion: v1
kind: Pod
metadata: {name: rewritten}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: c, image: ` + image + `, imagePullPolicy: Always}
`)
		s.waitPod("default", "rewritten", 3*time.Minute, podInfo.running)
		// containerd resolves the tag with HEAD, then fetches what it lacks.
		seen := reg.requests()
		if !contains(seen, "HEAD /v2/mirrorproject/rancher-images/web/manifests/rw") || !contains(seen, "GET /v2/mirrorproject/rancher-images/web/manifests/"+reg.manifest.digest) {
			t.Errorf("the registry did not see the rewritten manifest requests; it saw:\n%s", strings.Join(seen, "\n"))
		}
		s.kubectl("delete", "pod", "rewritten", "--wait=false")
	})

	run("the addons run from images named under --system-default-registry", func(t *testing.T) {
		eventually(t, 3*time.Minute, func() error {
			pods, err := s.pods("kube-system", "k8s-app=kube-dns")
			if err != nil {
				return err
			}
			if len(pods) == 0 {
				return fmt.Errorf("no CoreDNS pod")
			}
			out := s.kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[*].spec.containers[*].image}")
			if !strings.HasPrefix(out, systemRegistry+"/system/coredns:") {
				return fmt.Errorf("CoreDNS runs image %q, want one under %s", out, systemRegistry)
			}
			return pods[0].running()
		})
	})

	run("--disable-default-registry-endpoint keeps pulls on the mirror", func(t *testing.T) {
		hosts, err := os.ReadFile(filepath.Join(s.paths().Agent.ContainerdConfigDir, "certs.d", "skiff.test", "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(hosts), "https://skiff.test") || !strings.Contains(string(hosts), "server = \"http://127.0.0.1:") {
			t.Errorf("hosts.toml names the registry itself, or not the mirror's proxy, as the server:\n%s", hosts)
		}
	})
}

// testRegistry is a read-only OCI distribution registry serving one image
// from an OCI layout tarball under one repository and tag, recording every
// request; any other repository is unknown to it.
type testRegistry struct {
	addr     string
	srv      *http.Server
	mu       sync.Mutex
	seen     []string
	repo     string
	tag      string
	manifest struct {
		digest, mediaType string
	}
	blobs map[string][]byte // digest -> content, the manifest's included
}

func newTestRegistry(t *testing.T, repo, tag, tarball string) *testRegistry {
	t.Helper()
	r := &testRegistry{repo: repo, tag: tag, blobs: map[string][]byte{}}
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var index []byte
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", tarball, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case name == "index.json":
			index = data
		case strings.HasPrefix(name, "blobs/sha256/"):
			r.blobs["sha256:"+strings.TrimPrefix(name, "blobs/sha256/")] = data
		}
	}
	var idx struct {
		Manifests []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(index, &idx); err != nil || len(idx.Manifests) == 0 {
		t.Fatalf("index.json of %s: %v %s", tarball, err, index)
	}
	r.manifest.digest, r.manifest.mediaType = idx.Manifests[0].Digest, idx.Manifests[0].MediaType

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	t.Cleanup(r.close)
	return r
}

// close stops the registry: later pulls from it are refused.
func (r *testRegistry) close() { r.srv.Close() }

func (r *testRegistry) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.seen = append(r.seen, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	if req.URL.Path == "/v2/" {
		w.WriteHeader(http.StatusOK)
		return
	}
	prefix := "/v2/" + r.repo + "/"
	rest, ok := strings.CutPrefix(req.URL.Path, prefix)
	if !ok {
		http.Error(w, `{"errors":[{"code":"NAME_UNKNOWN"}]}`, http.StatusNotFound)
		return
	}
	var digest, mediaType string
	switch {
	case rest == "manifests/"+r.tag || rest == "manifests/"+r.manifest.digest:
		digest, mediaType = r.manifest.digest, r.manifest.mediaType
	case strings.HasPrefix(rest, "blobs/"):
		digest, mediaType = strings.TrimPrefix(rest, "blobs/"), "application/octet-stream"
	}
	data, ok := r.blobs[digest]
	if !ok {
		http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	if req.Method == http.MethodHead {
		return
	}
	w.Write(data)
}
