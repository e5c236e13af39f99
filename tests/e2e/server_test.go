package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServerLifecycle runs one server through what a user does with it:
// start, use, inspect, restart, crash, restart.
func TestServerLifecycle(t *testing.T) {
	s := newServer(t, "--tls-san", "skiff.example.test")
	s.start()
	s.waitReady()

	t.Run("files are private", func(t *testing.T) {
		for _, p := range []string{s.kubeconfig, s.paths().Server.TokenFile} {
			assertMode(t, p, 0o600)
		}
		keys, _ := filepath.Glob(filepath.Join(s.paths().Server.TLSDir, "*.key"))
		if len(keys) < 5 {
			t.Fatalf("expected the CA and client keys in server/tls, found %v", keys)
		}
		for _, k := range keys {
			assertMode(t, k, 0o600)
		}
	})

	var caPEM []byte
	t.Run("token pins the served CA", func(t *testing.T) {
		code, out := runSkiff(t, 30*time.Second, "token", "--data-dir", s.dataDir)
		if code != 0 {
			t.Fatalf("skiff token exited %d: %s", code, out)
		}
		token := strings.TrimSpace(out)
		if !strings.HasPrefix(token, "K10") || !strings.Contains(token, "::server:") {
			t.Fatalf("token %q is not in the K10<hash>::server:<secret> form", token)
		}
		caPEM = httpsGet(t, s, nil, "/cacerts", "", http.StatusOK)
		sum := sha256.Sum256(caPEM)
		if got := token[3:67]; got != hex.EncodeToString(sum[:]) {
			t.Fatalf("token CA hash %s does not match sha256 of /cacerts %x", got, sum)
		}
		if out := httpsGet(t, s, caPEM, "/ping", "", http.StatusOK); string(out) != "pong" {
			t.Fatalf("/ping answered %q", out)
		}
		// Join endpoints want the token; the wrong one is refused.
		secret := token[strings.LastIndex(token, ":")+1:]
		cfg := httpsGet(t, s, caPEM, "/v1-skiff/config", "server:"+secret, http.StatusOK)
		if !strings.Contains(string(cfg), `"clusterCIDR":"10.42.0.0/16"`) {
			t.Fatalf("cluster config lacks the cluster CIDR: %s", cfg)
		}
		httpsGet(t, s, caPEM, "/v1-skiff/config", "server:wrong", http.StatusUnauthorized)
	})

	t.Run("serving certificate covers the requested names", func(t *testing.T) {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		leaf := conn.ConnectionState().PeerCertificates[0]
		for _, name := range []string{"skiff.example.test", "kubernetes.default.svc.cluster.local", "localhost"} {
			if err := leaf.VerifyHostname(name); err != nil {
				t.Errorf("serving certificate: %v", err)
			}
		}
		if err := leaf.VerifyHostname("10.43.0.1"); err != nil {
			t.Errorf("serving certificate lacks the kubernetes service IP: %v", err)
		}
	})

	t.Run("anonymous requests are refused", func(t *testing.T) {
		for _, path := range []string{"/api", "/readyz", "/api/v1/namespaces/kube-system/secrets"} {
			httpsGet(t, s, caPEM, path, "", http.StatusUnauthorized)
		}
	})

	t.Run("stock kubectl reads the written kubeconfig", func(t *testing.T) {
		dir := t.TempDir()
		link := filepath.Join(dir, "kubectl")
		if err := os.Symlink(skiffBin, link); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(link, "--kubeconfig", s.kubeconfig, "get", "--raw", "/readyz").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Fatalf("kubectl (argv[0]) get --raw /readyz: %v: %s", err, out)
		}
		out, err = exec.Command(link, "--kubeconfig", s.kubeconfig, "version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Server Version: v1.37.2") {
			t.Fatalf("kubectl version: %v: %s", err, out)
		}
	})

	t.Run("control plane acts on objects", func(t *testing.T) {
		s.kubectl("create", "namespace", "demo")
		s.kubectl("-n", "demo", "create", "configmap", "settings", "--from-literal=color=blue")
		s.kubectl("-n", "demo", "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2")
		// The controller-manager turns the Deployment into a ReplicaSet and
		// Pods; the scheduler then reports that no node can take them.
		eventually(t, 2*time.Minute, func() error {
			out, err := s.kubectlErr("-n", "demo", "get", "pods", "-o", "name")
			if err != nil {
				return err
			}
			if strings.Count(out, "pod/web-") != 2 {
				return fmt.Errorf("pods: %q", out)
			}
			return nil
		})
		eventually(t, 2*time.Minute, func() error {
			out, err := s.kubectlErr("-n", "demo", "get", "events", "--field-selector", "reason=FailedScheduling", "-o", "name")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) == "" {
				return fmt.Errorf("no FailedScheduling event yet")
			}
			return nil
		})
	})

	t.Run("second server on the same port fails clearly", func(t *testing.T) {
		other := t.TempDir()
		code, out := runSkiff(t, time.Minute, "server", "--data-dir", filepath.Join(other, "data"),
			"--https-listen-port", fmt.Sprint(s.port), "--write-kubeconfig", filepath.Join(other, "kc.yaml"), "--disable-agent")
		if code == 0 || !strings.Contains(out, "already in use") {
			t.Fatalf("second server on port %d: exit %d, output:\n%s", s.port, code, out)
		}
	})

	t.Run("objects survive a clean restart", func(t *testing.T) {
		s.stop()
		if !strings.Contains(s.log(), "stopping datastore") {
			t.Errorf("shutdown did not stop the datastore last")
		}
		s.start()
		s.waitReady()
		if out := s.kubectl("-n", "demo", "get", "configmap", "settings", "-o", "jsonpath={.data.color}"); out != "blue" {
			t.Fatalf("configmap after restart: %q", out)
		}
		s.kubectl("-n", "demo", "get", "deployment", "web")
	})

	t.Run("acknowledged writes survive kill -9", func(t *testing.T) {
		var (
			mu      sync.Mutex
			created []string
			stop    = make(chan struct{})
			done    = make(chan struct{})
		)
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("crash-%d", i)
				if _, err := s.kubectlErr("-n", "demo", "create", "configmap", name, "--from-literal=i="+name); err == nil {
					mu.Lock()
					created = append(created, name)
					mu.Unlock()
				}
			}
		}()
		eventually(t, 2*time.Minute, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(created) < 15 {
				return fmt.Errorf("only %d configmaps created", len(created))
			}
			return nil
		})
		s.kill()
		close(stop)
		<-done

		s.start()
		s.waitReady()
		out := s.kubectl("-n", "demo", "get", "configmaps", "-o", "name")
		mu.Lock()
		defer mu.Unlock()
		for _, name := range created {
			if !strings.Contains(out, "configmap/"+name+"\n") {
				t.Errorf("configmap %s was acknowledged before the crash but is gone", name)
			}
		}
		t.Logf("%d acknowledged configmaps all present after kill -9", len(created))
		// The datastore still takes writes after the crash.
		s.kubectl("-n", "demo", "create", "configmap", "after-crash")
	})

	s.stop()
}

// TestServerRefusesBadInput checks that each mistake a user can make ends
// in one clear message and a non-zero exit, before anything starts.
func TestServerRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	notADir := filepath.Join(dir, "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("data-dir: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknownKey := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknownKey, []byte("no-such-option: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func(extra ...string) []string {
		return append([]string{"server", "--disable-agent", "--data-dir", filepath.Join(dir, "data"),
			"--write-kubeconfig", filepath.Join(dir, "kc.yaml"), "--https-listen-port", fmt.Sprint(freePort(t))}, extra...)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", base("--no-such-flag"), "no-such-flag"},
		{"invalid cluster CIDR", base("--cluster-cidr", "10.42.0.0/33"), "--cluster-cidr"},
		{"invalid node IP", base("--node-ip", "300.1.1.1"), "--node-ip"},
		{"overlapping CIDRs", base("--cluster-cidr", "10.0.0.0/8", "--service-cidr", "10.43.0.0/16"), "overlap"},
		{"malformed config file", base("--config", badYAML), "bad.yaml"},
		{"unknown config key", base("--config", unknownKey), "no-such-option"},
		{"missing config file", base("--config", filepath.Join(dir, "absent.yaml")), "absent.yaml"},
		{"unwritable data dir", append(base(), "--data-dir", filepath.Join(notADir, "data")), "not writable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runSkiff(t, time.Minute, tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, want failure; output:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output does not mention %q:\n%s", tc.want, out)
			}
			if n := strings.Count(strings.TrimSpace(out), "\n"); n > 3 {
				t.Errorf("expected a short, clear message, got %d lines:\n%s", n+1, out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out := runSkiff(t, 30*time.Second, "--version")
	if code != 0 || !strings.Contains(out, "skiff version") || !strings.Contains(out, "v1.37.2") {
		t.Fatalf("skiff --version: exit %d: %s", code, out)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %o, want %o", path, got, want)
	}
}

// httpsGet requests path on the server with optional basic auth and checks
// the status. A nil ca skips verification (used to fetch the CA itself).
func httpsGet(t *testing.T, s *server, ca []byte, path, basicAuth string, wantStatus int) []byte {
	t.Helper()
	tlsCfg := &tls.Config{InsecureSkipVerify: true}
	if ca != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			t.Fatal("bad CA PEM")
		}
		tlsCfg = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", s.port, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	if user, pass, ok := strings.Cut(basicAuth, ":"); ok {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: status %d, want %d: %s", path, resp.StatusCode, wantStatus, body)
	}
	return body
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// TestCheckConfig runs the host check; the test machines have every
// feature a node needs, so it must pass and say so.
func TestCheckConfig(t *testing.T) {
	code, out := runSkiff(t, 30*time.Second, "check-config")
	if code != 0 || !strings.Contains(out, "all required kernel features are present") || !strings.Contains(out, "ok      CONFIG_BRIDGE_NETFILTER") {
		t.Fatalf("skiff check-config: exit %d:\n%s", code, out)
	}
}
