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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestJoinPortSecurity checks what a join token can and cannot buy on a
// running server: a kubelet serving certificate from the kubelet-serving
// CA for the node's own names only, never one for the apiserver; that a
// flood of bad tokens costs the apiserver nothing and the log a bounded
// number of lines; and `skiff certificate check` on a fresh server.
func TestJoinPortSecurity(t *testing.T) {
	s := newServer(t, "--agent-token", "agent-secret-123")
	s.start()
	s.waitReady()
	caPEM := httpsGet(t, s, nil, "/cacerts", "", 200)
	tlsDir := s.paths().Server.TLSDir
	agentCreds := "node:agent-secret-123"
	password := map[string]string{"Skiff-Node-Password": strings.Repeat("p", 32)}

	t.Run("kubelet serving certificates come from their own CA, for the node's names only", func(t *testing.T) {
		assertMode(t, filepath.Join(tlsDir, "kubelet-serving-ca.key"), 0o600)
		kubeletCA := readPEMCert(t, filepath.Join(tlsDir, "kubelet-serving-ca.crt"))
		headers := map[string]string{"Skiff-Node-Name": "skt-sec-node", "Skiff-Node-Password": password["Skiff-Node-Password"]}

		status, body, err := joinRequest(s, caPEM, http.MethodPost, "/v1-skiff/serving-kubelet", agentCreds, headers,
			servingCSR(t, []string{"skt-sec-node", "localhost"}, []net.IP{net.ParseIP("192.0.2.50")}))
		if err != nil || status != 200 {
			t.Fatalf("the node's own names: status %d, %v: %s", status, err, body)
		}
		leaf := parseCert(t, body)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(kubeletCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the kubelet serving certificate does not verify against the kubelet-serving CA: %v", err)
		}
		serverCA := parseCert(t, caPEM)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(serverCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			t.Error("a kubelet serving certificate verifies against the CA pods and kubelets trust")
		}

		for _, tc := range []struct {
			dns     []string
			ips     []net.IP
			refused string
		}{
			{dns: []string{"skt-sec-node", "kubernetes.default.svc"}, refused: "kubernetes.default.svc"},
			{dns: []string{"kubernetes"}, refused: `"kubernetes"`},
			{ips: []net.IP{net.ParseIP("10.43.0.1")}, refused: "10.43.0.1"},
			{ips: []net.IP{net.ParseIP("169.254.10.10")}, refused: "169.254.10.10"},
		} {
			status, body, err := joinRequest(s, caPEM, http.MethodPost, "/v1-skiff/serving-kubelet", agentCreds, headers, servingCSR(t, tc.dns, tc.ips))
			if err != nil || status != http.StatusForbidden || !strings.Contains(string(body), tc.refused) {
				t.Errorf("a CSR for %v %v with a valid agent token: status %d (%v): %s; want 403 naming %s", tc.dns, tc.ips, status, err, body, tc.refused)
			}
		}
	})

	t.Run("a flood of bad tokens costs the apiserver nothing", func(t *testing.T) {
		secretGETs := func() int { return apiserverRequests(t, s, "secrets", "GET") }
		before := secretGETs()
		logBefore := countJoinRefusalLines(s.log())

		var readyzFailures atomic.Int32
		stop := make(chan struct{})
		var polled sync.WaitGroup
		polled.Add(1)
		go func() {
			defer polled.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if out, err := s.kubectlErr("get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
					readyzFailures.Add(1)
				}
			}
		}()

		// 200 loopback addresses, 10 guesses each: within every address's
		// burst, so all 2,000 are checked against the token cache.
		statuses := floodJoinPort(t, fmt.Sprintf("https://127.0.0.1:%d", s.port), caPEM, 200, 10)
		if statuses[http.StatusUnauthorized] != 2000 {
			t.Errorf("2,000 checked bad tokens: statuses %v, want 2000 × 401", statuses)
		}
		// One address guessing on: throttled.
		statuses = floodJoinPort(t, fmt.Sprintf("https://127.0.0.1:%d", s.port), caPEM, 1, 300)
		if statuses[http.StatusTooManyRequests] < 250 {
			t.Errorf("300 guesses from one address: statuses %v, want most throttled (429)", statuses)
		}
		close(stop)
		polled.Wait()

		if n := readyzFailures.Load(); n > 0 {
			t.Errorf("/readyz failed %d times during the flood", n)
		}
		if delta := secretGETs() - before; delta > 3 {
			t.Errorf("the apiserver served %d Secret GETs during the flood: bad tokens must be checked against the cache", delta)
		}
		if grown := countJoinRefusalLines(s.log()) - logBefore; grown > 10 {
			t.Errorf("2,300 refused requests wrote %d log lines about join requests, want a bounded few", grown)
		}
		// The right token from the flooding address gets in once it waits
		// what it was told.
		eventually(t, 10*time.Second, func() error { return joinStatus(s, caPEM, agentCreds, 200) })
	})

	t.Run("certificate check lists every certificate", func(t *testing.T) {
		code, out := runSkiff(t, time.Minute, "certificate", "check", "--config", "", "--data-dir", s.dataDir)
		if code != 0 {
			t.Fatalf("skiff certificate check on a fresh server: exit %d:\n%s", code, out)
		}
		for _, service := range []string{"server-ca", "kubelet-serving-ca", "client-ca", "request-header-ca", "kube-apiserver", "admin", "controller-manager", "scheduler", "auth-proxy"} {
			m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(service) + `\s+/\S+\.crt\s+\S+\s+ok, (\d+) days left$`).FindStringSubmatch(out)
			if days, _ := strconv.Atoi(append(m, "", "")[1]); days < 360 {
				t.Errorf("no line for %s with a year or more left in:\n%s", service, out)
			}
		}
		code, out = runSkiff(t, time.Minute, "certificate", "rotate", "--config", "", "--data-dir", s.dataDir, "--service", "nonsense")
		if code == 0 || !strings.Contains(out, `unknown service "nonsense"`) {
			t.Errorf("rotate of an unknown service: exit %d: %s", code, out)
		}
	})
}

// floodJoinPort sends perSource bad-token requests from each of sources
// loopback addresses (127.0.1.x, ...) and counts the answers by status.
func floodJoinPort(t *testing.T, url string, caPEM []byte, sources, perSource int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients := map[int]*http.Client{}
			for src := range work {
				c := clients[src]
				if c == nil {
					local := net.IPv4(127, 0, byte(1+src/250), byte(1+src%250))
					if sources == 1 {
						local = net.IPv4(127, 0, 0, 1)
					}
					c = joinHTTPClient(caPEM, local)
					clients[src] = c
				}
				req, _ := http.NewRequest(http.MethodGet, url+"/v1-skiff/config", nil)
				req.SetBasicAuth("abcdef", "0123456789abcdef")
				code := 0
				if resp, err := c.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			}
		}()
	}
	for src := range sources {
		for range perSource {
			work <- src
		}
	}
	close(work)
	wg.Wait()
	return statuses
}

// joinHTTPClient trusts caPEM and, when local is set, connects from it.
func joinHTTPClient(caPEM []byte, local net.IP) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		dialer.LocalAddr = &net.TCPAddr{IP: local}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:     dialer.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"},
	}}
}

// joinRequest sends one request to the server's join endpoints.
func joinRequest(s *server, caPEM []byte, method, path, creds string, headers map[string]string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", s.port, path), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if user, pass, ok := strings.Cut(creds, ":"); ok {
		req.SetBasicAuth(user, pass)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := joinHTTPClient(caPEM, nil).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func servingCSR(t *testing.T, dns []string, ips []net.IP) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "skt-sec-node"}, DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// apiserverRequests sums the apiserver's request counter for one resource
// and verb, from its own metrics.
func apiserverRequests(t *testing.T, s *server, resource, verb string) int {
	t.Helper()
	out := s.kubectl("get", "--raw", "/metrics")
	total := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="`+resource+`"`) || !strings.Contains(line, `verb="`+verb+`"`) {
			continue
		}
		fields := strings.Fields(line)
		n, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		total += int(n)
	}
	return total
}

func countJoinRefusalLines(log string) int {
	return strings.Count(log, "join request")
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseCert(t, b)
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}
