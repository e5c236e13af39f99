package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/tests/nodetest"
)

// TestClusterServices checks what a fresh server runs with no image pulled:
// cluster DNS, the ingress controller and the manifests folder, runtimes
// found on the host and added by a containerd config template, and that
// --disable removes a bundled addon from a running cluster.
func TestClusterServices(t *testing.T) {
	s := newNode(t)
	crun, crunLog := prepareRuntimes(t, s)
	s.start()
	s.waitReady()
	node := s.waitNodeReady(3 * time.Minute)
	nodeIP, nodeName := node.internalIP(), node.Metadata.Name

	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		})
	}

	if !run("bundled addons are applied and run from local images", func(t *testing.T) {
		for _, name := range []string{"coredns", "ingress"} {
			s.waitAddonState(name, "Applied", 2*time.Minute)
		}
		s.waitSystemPodsReady("k8s-app=kube-dns", 1, 3*time.Minute)
		s.waitSystemPodsReady("app.kubernetes.io/name=skiff-ingress", 1, 3*time.Minute)
		s.checkSystemImagesLocal(t)
		if class := s.kubectl("get", "ingressclass", "skiff", "-o", "jsonpath={.metadata.annotations.ingressclass\\.kubernetes\\.io/is-default-class}"); class != "true" {
			t.Errorf("IngressClass skiff is-default-class = %q, want true", class)
		}
	}) {
		t.FailNow()
	}

	run("a runtime found on the host and one a containerd config template adds run pods of their RuntimeClasses", func(t *testing.T) {
		s.checkRuntimes(t, crun, crunLog)
	})

	// Two backends, a and b, each answering with its pod's hostname.
	for _, name := range []string{"a", "b"} {
		s.kubectl("create", "deployment", name, "--image="+webImageV1, "--port=8080")
		s.kubectl("expose", "deployment", name, "--port", "80", "--target-port", "8080")
	}
	s.waitPodsRunning("app=a", 1)
	s.waitPodsRunning("app=b", 1)
	s.kubectl("run", "client", "--image="+webImageV1, "--restart=Never", "--command", "--", webBinary, "sleep", "infinity")
	s.waitPod("default", "client", 2*time.Minute, podInfo.running)
	aIP := strings.TrimSpace(s.kubectl("get", "service", "a", "-o", "jsonpath={.spec.clusterIP}"))

	run("cluster DNS resolves services, the API and nodes", func(t *testing.T) {
		resolves := func(name, want string) {
			t.Helper()
			eventually(t, 2*time.Minute, func() error {
				out, err := s.kubectlErr("exec", "client", "--", webBinary, "resolve", name)
				if err != nil {
					return err
				}
				if !slices.Contains(strings.Fields(out), want) {
					return fmt.Errorf("%s resolves to %q, want %s", name, out, want)
				}
				return nil
			})
		}
		resolves("kubernetes.default.svc.cluster.local", "10.43.0.1")
		resolves("a", aIP)
		resolves("a.default.svc.cluster.local", aIP)
		resolves(nodeName, nodeIP)

		out, err := s.kubectlErr("exec", "client", "--", webBinary, "resolve", "no-such-name.invalid")
		if err == nil || !strings.Contains(err.Error(), "no such host") {
			t.Errorf("unknown name: want NXDOMAIN (no such host), got %q, %v", out, err)
		}
		eventually(t, time.Minute, func() error {
			out, err := s.kubectlErr("exec", "client", "--", webBinary, "get", "http://a.default.svc.cluster.local/dns")
			if err != nil {
				return err
			}
			if !strings.HasPrefix(out, "hostname=a-") {
				return fmt.Errorf("unexpected answer %q", out)
			}
			return nil
		})
	})

	run("the coredns-custom ConfigMap extends cluster DNS", func(t *testing.T) {
		s.apply(`apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns-custom
  namespace: kube-system
data:
  lab.server: |
    lab.example:53 {
        hosts {
            192.0.2.10 nas.lab.example
        }
    }
`)
		// The kubelet refreshes the volume and CoreDNS's reload plugin
		// notices the imported file: each takes up to a minute or so.
		eventually(t, 4*time.Minute, func() error {
			out, err := s.kubectlErr("exec", "client", "--", webBinary, "resolve", "nas.lab.example")
			if err != nil {
				return err
			}
			if !slices.Contains(strings.Fields(out), "192.0.2.10") {
				return fmt.Errorf("nas.lab.example resolves to %q, want 192.0.2.10", out)
			}
			return nil
		})
	})

	certPEM, keyPEM := selfSignedCert(t, "secure.example")
	certFile := filepath.Join(t.TempDir(), "tls.crt")
	keyFile := filepath.Join(filepath.Dir(certFile), "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s.kubectl("create", "secret", "tls", "secure-tls", "--cert", certFile, "--key", keyFile)
	s.apply(webIngressManifest)

	run("the addons' pods share one containerd shim, which no pod of another namespace may join", func(t *testing.T) {
		addons := []string{"k8s-app=kube-dns", "app.kubernetes.io/name=skiff-ingress", "app.kubernetes.io/name=local-path-provisioner",
			"app.kubernetes.io/name=metrics-server"}
		for _, selector := range addons {
			s.waitSystemPodsReady(selector, 1, 3*time.Minute)
		}
		systemShim := func() (int, map[string][]int) {
			t.Helper()
			pods, err := s.pods("kube-system", "")
			if err != nil {
				t.Fatal(err)
			}
			shims, pids := map[int][]string{}, map[string][]int{}
			for _, p := range pods {
				if p.Metadata.Annotations[shimGroupAnnotation] != "skiff-system" || p.running() != nil {
					continue
				}
				for shim, procs := range podShims(t, p.Metadata.UID) {
					shims[shim] = append(shims[shim], p.Metadata.Name)
					pids[p.Metadata.Name] = append(pids[p.Metadata.Name], procs...)
				}
			}
			if len(pids) != len(addons) || len(shims) != 1 {
				t.Fatalf("the %d running pods in the shim group skiff-system (want %d) have the shims %v, want one", len(pids), len(addons), shims)
			}
			for shim := range shims {
				return shim, pids
			}
			panic("unreachable")
		}
		shim, pids := systemShim()
		// The users' pods a, b and client.
		users, err := s.pods("default", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range users {
			if _, shared := podShims(t, p.Metadata.UID)[shim]; shared {
				t.Errorf("pod %s runs in the system pods' shim %d", p.Metadata.Name, shim)
			}
		}

		// The shim outlives the pod that started it (the one with the
		// oldest process), whose bundle holds the shim's working
		// directory, and the other pods keep their processes.
		first := ""
		for name, procs := range pids {
			if first == "" || procs[0] < pids[first][0] {
				first = name
			}
		}
		s.kubectl("-n", "kube-system", "delete", "pod", first, "--wait")
		for _, selector := range addons {
			s.waitSystemPodsReady(selector, 1, 3*time.Minute)
		}
		after, afterPIDs := systemShim()
		if after != shim {
			t.Errorf("the system pods moved from shim %d to %d when pod %s was replaced", shim, after, first)
		}
		for name, procs := range pids {
			if name != first && !slices.Equal(procs, afterPIDs[name]) {
				t.Errorf("pod %s's processes went from %v to %v when pod %s was replaced", name, procs, afterPIDs[name], first)
			}
		}

		eventually(t, time.Minute, func() error {
			out, err := s.kubectlErr("run", "joins-system-shim", "--image="+webImageV1, "--restart=Never",
				"--annotations="+shimGroupAnnotation+"=skiff-system", "--command", "--", webBinary, "sleep", "infinity")
			if err == nil {
				s.kubectl("delete", "pod", "joins-system-shim", "--wait=false")
				return fmt.Errorf("a pod in default with %s was admitted: %s", shimGroupAnnotation, out)
			}
			if !strings.Contains(err.Error(), "is reserved to kube-system") {
				return fmt.Errorf("a pod in default with %s was refused for another reason: %v", shimGroupAnnotation, err)
			}
			return nil
		})
	})

	run("ingress routes by host and path", func(t *testing.T) {
		ingressAnswers(t, nodeIP, "a.example", "/", http.StatusOK, "hostname=a-")
		ingressAnswers(t, nodeIP, "b.example", "/api/items", http.StatusOK, "hostname=b-")
		ingressAnswers(t, nodeIP, "b.example", "/other", http.StatusNotFound, "")
		ingressAnswers(t, nodeIP, "unknown.example", "/", http.StatusNotFound, "")
		eventually(t, time.Minute, func() error {
			ips := s.kubectl("get", "ingress", "web", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
			if !slices.Contains(strings.Fields(ips), nodeIP) {
				return fmt.Errorf("ingress status addresses %q, want %s", ips, nodeIP)
			}
			return nil
		})
	})

	run("ingress serves the TLS secret for its SNI name", func(t *testing.T) {
		block, _ := pem.Decode(certPEM)
		eventually(t, time.Minute, func() error {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(nodeIP, "443"),
				&tls.Config{ServerName: "secure.example", InsecureSkipVerify: true})
			if err != nil {
				return err
			}
			defer conn.Close()
			peer := conn.ConnectionState().PeerCertificates
			if len(peer) == 0 || !bytes.Equal(peer[0].Raw, block.Bytes) {
				return fmt.Errorf("the ingress did not present the secure-tls certificate for secure.example")
			}
			return nil
		})
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(certPEM)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			Proxy:             nil,
			TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "secure.example"},
			ForceAttemptHTTP2: true,
		}}
		eventually(t, time.Minute, func() error {
			req, _ := http.NewRequest("GET", "https://"+net.JoinHostPort(nodeIP, "443")+"/secure", nil)
			req.Host = "secure.example"
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "hostname=a-") {
				return fmt.Errorf("https://secure.example/secure: %s %q", resp.Status, body)
			}
			if resp.ProtoMajor != 2 {
				return fmt.Errorf("https://secure.example/secure answered over %s, want HTTP/2", resp.Proto)
			}
			return nil
		})
	})

	run("a backend scaled to zero answers 503 and recovers", func(t *testing.T) {
		s.kubectl("scale", "deployment", "b", "--replicas=0")
		ingressAnswers(t, nodeIP, "b.example", "/api", http.StatusServiceUnavailable, "")
		s.kubectl("scale", "deployment", "b", "--replicas=1")
		ingressAnswers(t, nodeIP, "b.example", "/api", http.StatusOK, "hostname=b-")
	})

	run("an ingress to a missing service gets a warning event", func(t *testing.T) {
		s.apply(brokenIngressManifest)
		eventually(t, time.Minute, func() error {
			out := s.kubectl("get", "events", "--field-selector", "involvedObject.kind=Ingress,involvedObject.name=broken",
				"-o", "jsonpath={range .items[*]}{.type} {.message}{\"\\n\"}{end}")
			if !strings.Contains(out, "Warning") || !strings.Contains(out, "no-such-service") {
				return fmt.Errorf("events of ingress broken: %q", out)
			}
			return nil
		})
	})

	run("manifests folder: apply, update, prune, report errors", func(t *testing.T) {
		dir := s.paths().Server.ManifestsDir
		s.writeManifest(dir, "user.yaml", userManifest("1", true))
		eventually(t, time.Minute, func() error {
			if v, err := s.kubectlErr("get", "configmap", "user-a", "-o", "jsonpath={.data.x}"); err != nil || v != "1" {
				return fmt.Errorf("configmap user-a x=%q, %v", v, err)
			}
			_, err := s.kubectlErr("get", "configmap", "user-b")
			return err
		})
		s.waitAddonState("user", "Applied", time.Minute)

		// Edit the file: one object changes, one is removed from it.
		s.writeManifest(dir, "user.yaml", userManifest("2", false))
		eventually(t, time.Minute, func() error {
			if v, err := s.kubectlErr("get", "configmap", "user-a", "-o", "jsonpath={.data.x}"); err != nil || v != "2" {
				return fmt.Errorf("configmap user-a x=%q, %v", v, err)
			}
			if _, err := s.kubectlErr("get", "configmap", "user-b"); err == nil {
				return fmt.Errorf("configmap user-b is still there after its removal from user.yaml")
			}
			return nil
		})

		// A malformed file is reported and does not hold back the others.
		s.writeManifest(dir, "bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [broken\n")
		s.writeManifest(dir, "good.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\ndata:\n  ok: \"yes\"\n")
		eventually(t, time.Minute, func() error {
			_, err := s.kubectlErr("get", "configmap", "good")
			return err
		})
		s.waitAddonState("bad", "Failed", time.Minute)
		eventually(t, time.Minute, func() error {
			out := s.kubectl("-n", "kube-system", "get", "events", "--field-selector", "involvedObject.kind=Addon,involvedObject.name=bad",
				"-o", "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}")
			if !strings.Contains(out, "Warning") || !strings.Contains(out, "bad.yaml") {
				return fmt.Errorf("events of addon bad: %q", out)
			}
			return nil
		})

		// X.yaml.skip beside X.yaml (k3s's convention) keeps X out; what
		// an earlier version deployed stays.
		s.writeManifest(dir, "skipped.yaml.skip", "")
		s.writeManifest(dir, "skipped.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: skipped\n")
		s.writeManifest(dir, "user.yaml.skip", "")
		s.writeManifest(dir, "user.yaml", userManifest("3", false))
		s.waitAddonState("user", "Skipped", time.Minute)
		if _, err := s.kubectlErr("get", "configmap", "skipped"); err == nil {
			t.Error("skipped.yaml was deployed although skipped.yaml.skip exists")
		}
		if v, err := s.kubectlErr("get", "configmap", "user-a", "-o", "jsonpath={.data.x}"); err != nil || v != "2" {
			t.Errorf("with user.yaml.skip, configmap user-a x=%q (%v), want the deployed 2 left as it is", v, err)
		}
		if err := os.Remove(filepath.Join(dir, "user.yaml.skip")); err != nil {
			t.Fatal(err)
		}
		s.waitAddonState("user", "Applied", time.Minute)
		eventually(t, time.Minute, func() error {
			if v, err := s.kubectlErr("get", "configmap", "user-a", "-o", "jsonpath={.data.x}"); err != nil || v != "3" {
				return fmt.Errorf("configmap user-a x=%q, %v", v, err)
			}
			return nil
		})

		// Removing the file removes what it created.
		if err := os.Remove(filepath.Join(dir, "user.yaml")); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, func() error {
			if _, err := s.kubectlErr("get", "configmap", "user-a"); err == nil {
				return fmt.Errorf("configmap user-a is still there after user.yaml was removed")
			}
			if _, err := s.kubectlErr("-n", "kube-system", "get", "addon", "user"); err == nil {
				return fmt.Errorf("addon user is still there after user.yaml was removed")
			}
			return nil
		})
	})

	run("--disable ingress removes it, --disable of a user's file too; enabling them again brings them back", func(t *testing.T) {
		s.writeManifest(s.paths().Server.ManifestsDir, "mine.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine\n")
		eventually(t, time.Minute, func() error {
			_, err := s.kubectlErr("get", "configmap", "mine")
			return err
		})
		args := slices.Clone(s.args)
		s.stop()
		// The addons' watches must not hold up the apiserver's shutdown.
		if l := s.log()[s.logStart:]; strings.Contains(l, "did not stop within") {
			t.Errorf("a component hit the stop timeout with the addons running:\n%s", grepLines(l, "did not stop within"))
		}
		s.args = append(s.args, "--disable", "ingress,mine")
		s.start()
		s.waitReady()
		eventually(t, time.Minute, func() error {
			if _, err := s.kubectlErr("get", "configmap", "mine"); err == nil {
				return fmt.Errorf("configmap mine still exists with --disable mine")
			}
			return nil
		})
		if _, err := os.Stat(filepath.Join(s.paths().Server.ManifestsDir, "mine.yaml")); err != nil {
			t.Errorf("--disable of a user's file removed the file: %v", err)
		}
		eventually(t, 2*time.Minute, func() error {
			if _, err := s.kubectlErr("-n", "kube-system", "get", "daemonset", "skiff-ingress"); err == nil {
				return fmt.Errorf("daemonset skiff-ingress still exists with --disable ingress")
			}
			out := s.kubectl("-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=skiff-ingress", "-o", "name")
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("ingress pods still there: %s", out)
			}
			return nil
		})
		// The system images are already in containerd: a restart of the
		// same binary must not import them again.
		if l := s.log()[s.logStart:]; strings.Contains(l, "imported system image") {
			t.Errorf("a restart imported the system images again:\n%s", grepLines(l, "imported system image"))
		}
		if _, err := os.Stat(filepath.Join(s.paths().Server.ManifestsDir, "ingress.yaml")); !os.IsNotExist(err) {
			t.Errorf("ingress.yaml is still in the manifests folder: %v", err)
		}
		s.waitSystemPodsReady("k8s-app=kube-dns", 1, time.Minute)

		s.stop()
		s.args = args
		s.start()
		s.waitReady()
		s.waitSystemPodsReady("app.kubernetes.io/name=skiff-ingress", 1, 3*time.Minute)
		ingressAnswers(t, nodeIP, "a.example", "/", http.StatusOK, "hostname=a-")
		eventually(t, time.Minute, func() error {
			_, err := s.kubectlErr("get", "configmap", "mine")
			return err
		})
	})
}

func grepLines(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// waitAddonState waits until the Addon record of a manifest shows state.
func (s *server) waitAddonState(name, state string, timeout time.Duration) {
	s.t.Helper()
	eventually(s.t, timeout, func() error {
		s.alive()
		out, err := s.kubectlErr("-n", "kube-system", "get", "addon", name, "-o", "jsonpath={.status.state} {.status.message}")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(out, state) {
			return fmt.Errorf("addon %s: %q, want %s", name, out, state)
		}
		return nil
	})
}

// checkSystemImagesLocal checks that every kube-system pod runs an image
// built into skiff, none pulled.
func (s *server) checkSystemImagesLocal(t *testing.T) {
	t.Helper()
	out := s.kubectl("-n", "kube-system", "get", "pods", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}")
	for _, img := range strings.Fields(out) {
		if !strings.HasPrefix(img, "skiff.local/system/") {
			t.Errorf("system pod runs image %s, want one built into skiff", img)
		}
	}
}

// shimGroupAnnotation is the pod annotation that puts pods into one
// containerd shim.
const shimGroupAnnotation = "io.containerd.runc.v2.group"

// podShims maps each containerd shim that is a parent of a process of the
// pod with this UID to those processes' PIDs, sorted.
func podShims(t *testing.T, uid string) map[int][]int {
	t.Helper()
	procs := nodetest.ListProcs()
	shims := map[int][]int{}
	for pid, p := range procs {
		if !strings.Contains(p.Cgroup, "pod"+uid) {
			continue
		}
		parent := procs[p.PPID]
		if parent.IsShim() {
			shims[parent.PID] = append(shims[parent.PID], pid)
		}
	}
	if len(shims) == 0 {
		t.Fatalf("no process of pod %s runs under a containerd shim", uid)
	}
	for _, pids := range shims {
		slices.Sort(pids)
	}
	return shims
}

// waitSystemPodsReady waits for n Ready pods in kube-system.
func (s *server) waitSystemPodsReady(selector string, n int, timeout time.Duration) {
	s.t.Helper()
	eventually(s.t, timeout, func() error {
		s.alive()
		out, err := s.kubectlErr("-n", "kube-system", "get", "pods", "-l", selector,
			"-o", "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}")
		if err != nil {
			return err
		}
		ready := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasSuffix(line, " True") {
				ready++
			}
		}
		if ready != n {
			return fmt.Errorf("%d of the pods %q are Ready, want %d: %q", ready, selector, n, out)
		}
		return nil
	})
}

// writeManifest puts a file into the manifests folder in one step.
func (s *server) writeManifest(dir, name, content string) {
	s.t.Helper()
	tmp := filepath.Join(dir, "."+name+".partial")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		s.t.Fatal(err)
	}
}

// ingressAnswers waits until the node's port 80 answers a request for
// host and path with status (and a body starting with prefix).
func ingressAnswers(t *testing.T, nodeIP, host, path string, status int, prefix string) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		req, err := http.NewRequest("GET", "http://"+net.JoinHostPort(nodeIP, "80")+path, nil)
		if err != nil {
			return err
		}
		req.Host = host
		resp, err := hostClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != status || !strings.HasPrefix(string(body), prefix) {
			return fmt.Errorf("http://%s%s: %s %q, want %d %q...", host, path, resp.Status, body, status, prefix)
		}
		return nil
	})
}

func selfSignedCert(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func userManifest(x string, withB bool) string {
	m := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: user-a\ndata:\n  x: \"" + x + "\"\n"
	if withB {
		m += "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: user-b\n"
	}
	return m
}

const webIngressManifest = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  tls:
    - hosts: [secure.example]
      secretName: secure-tls
  rules:
    - host: a.example
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: a, port: {number: 80}}
    - host: b.example
      http:
        paths:
          - path: /api
            pathType: Prefix
            backend:
              service: {name: b, port: {number: 80}}
    - host: secure.example
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: a, port: {number: 80}}
`

const brokenIngressManifest = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: broken
spec:
  rules:
    - host: broken.example
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: no-such-service, port: {number: 80}}
`
