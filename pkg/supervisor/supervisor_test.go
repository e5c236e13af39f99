package supervisor

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/pkg/pki"
)

func newTestSupervisor(t *testing.T) (*Supervisor, *httptest.Server) {
	t.Helper()
	certs, err := pki.EnsureServer(t.TempDir(), pki.ServerOptions{ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := certs.ServerCABundle()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := pki.NewToken(bundle, "server")
	if err != nil {
		t.Fatal(err)
	}
	s := &Supervisor{PKI: certs, Token: tok, Cluster: ClusterConfig{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16,fd00:43::/112", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.43.0.0/16"), netip.MustParsePrefix("fd00:43::/112")}}
	apiserver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-From", "apiserver")
		_, _ = io.WriteString(w, "apiserver:"+r.URL.Path)
	})
	srv := httptest.NewServer(s.Wrap(apiserver))
	t.Cleanup(srv.Close)
	return s, srv
}

func do(t *testing.T, method, url string, tok *pki.Token, node string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if tok != nil {
		req.SetBasicAuth(tok.Username, tok.Password)
	}
	if node != "" {
		req.Header.Set(NodeNameHeader, node)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func csrPEM(t *testing.T, dns []string, ips []net.IP) []byte {
	t.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}, DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestCACertsIsPublicAndMatchesToken(t *testing.T) {
	s, srv := newTestSupervisor(t)
	resp, body := do(t, "GET", srv.URL+"/cacerts", nil, "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !s.Token.VerifyCA(body) {
		t.Fatal("the token does not pin the served CA bundle")
	}
}

func TestOtherPathsGoToTheAPIServer(t *testing.T) {
	_, srv := newTestSupervisor(t)
	resp, body := do(t, "GET", srv.URL+"/api/v1/namespaces", nil, "", nil)
	if resp.Header.Get("X-From") != "apiserver" || string(body) != "apiserver:/api/v1/namespaces" {
		t.Fatalf("request not handed to the apiserver: %s", body)
	}
}

func TestJoinEndpointsNeedTheToken(t *testing.T) {
	s, srv := newTestSupervisor(t)
	wrong := s.Token
	wrong.Password = "not-the-secret"
	for _, path := range []string{"config", "client-ca.crt", "unknown"} {
		if resp, _ := do(t, "GET", srv.URL+JoinPrefix+path, nil, "", nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without token: status %d", path, resp.StatusCode)
		}
		resp, body := do(t, "GET", srv.URL+JoinPrefix+path, &wrong, "", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with wrong token: status %d", path, resp.StatusCode)
		}
		if strings.Contains(string(body), s.Token.Password) {
			t.Errorf("response leaks the secret")
		}
	}
	resp, body := do(t, "GET", srv.URL+JoinPrefix+"config", &s.Token, "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("config: status %d: %s", resp.StatusCode, body)
	}
	var cc ClusterConfig
	if err := json.Unmarshal(body, &cc); err != nil || cc != s.Cluster {
		t.Fatalf("config = %+v (%v), want %+v", cc, err, s.Cluster)
	}
}

func TestKubeletCertificates(t *testing.T) {
	s, srv := newTestSupervisor(t)
	clientCA := loadCert(t, s.PKI.ClientCACert)
	serverCA := loadCert(t, s.PKI.ServerCACert)

	resp, body := do(t, "POST", srv.URL+JoinPrefix+"client-kubelet", &s.Token, "node-1", csrPEM(t, nil, nil))
	if resp.StatusCode != 200 {
		t.Fatalf("client-kubelet: %d %s", resp.StatusCode, body)
	}
	leaf := firstCert(t, body)
	if leaf.Subject.CommonName != "system:node:node-1" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "system:nodes" {
		t.Fatalf("client cert subject %v", leaf.Subject)
	}
	verify(t, leaf, clientCA, x509.ExtKeyUsageClientAuth)

	resp, body = do(t, "POST", srv.URL+JoinPrefix+"serving-kubelet", &s.Token, "node-1", csrPEM(t, []string{"node-1", "localhost"}, []net.IP{net.ParseIP("192.0.2.7")}))
	if resp.StatusCode != 200 {
		t.Fatalf("serving-kubelet: %d %s", resp.StatusCode, body)
	}
	leaf = firstCert(t, body)
	verify(t, leaf, loadCert(t, s.PKI.KubeletServingCACert), x509.ExtKeyUsageServerAuth)
	for _, name := range []string{"node-1", "localhost", "192.0.2.7"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("serving cert: %v", err)
		}
	}
	// What pods and kubelets trust must not accept a node's certificate.
	pool := x509.NewCertPool()
	pool.AddCert(serverCA)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err == nil {
		t.Error("a kubelet serving certificate verifies against the server CA")
	}
}

func TestServingCertificateForTheAPIServerIsRefused(t *testing.T) {
	s, srv := newTestSupervisor(t)
	cases := map[string]struct {
		dns []string
		ips []net.IP
		// refused is the name the answer must quote.
		refused string
	}{
		"the kubernetes Service name": {dns: []string{"node-1", "kubernetes.default.svc"}, refused: "kubernetes.default.svc"},
		"the kubernetes Service IP":   {dns: []string{"node-1"}, ips: []net.IP{net.ParseIP("10.43.0.1")}, refused: "10.43.0.1"},
		"link-local":                  {ips: []net.IP{net.ParseIP("169.254.10.10")}, refused: "169.254.10.10"},
		"another host name":           {dns: []string{"api.example.com"}, refused: "api.example.com"},
		"a wildcard":                  {dns: []string{"*.node-1"}, refused: "*.node-1"},
	}
	for name, tc := range cases {
		resp, body := do(t, "POST", srv.URL+JoinPrefix+"serving-kubelet", &s.Token, "node-1", csrPEM(t, tc.dns, tc.ips))
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), tc.refused) {
			t.Errorf("%s: status %d (%s), want 403 naming %q", name, resp.StatusCode, strings.TrimSpace(string(body)), tc.refused)
		}
	}
}

func TestBadCertificateRequests(t *testing.T) {
	s, srv := newTestSupervisor(t)
	cases := map[string]struct {
		node string
		body []byte
	}{
		"no node name":      {"", csrPEM(t, nil, nil)},
		"invalid node name": {"Bad_Name", csrPEM(t, nil, nil)},
		"not PEM":           {"node-1", []byte("hello")},
		"tampered CSR":      {"node-1", tamper(t, csrPEM(t, nil, nil))},
	}
	for name, tc := range cases {
		resp, body := do(t, "POST", srv.URL+JoinPrefix+"client-kubelet", &s.Token, tc.node, tc.body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d: %s", name, resp.StatusCode, body)
		}
	}
}

// tamper flips a byte inside the CSR's signed content so its signature no
// longer verifies.
func tamper(t *testing.T, p []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(p)
	der := append([]byte(nil), block.Bytes...)
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	// Replace the public key with another one: still parseable, wrong signature.
	other, _ := pki.GenerateKey()
	otherDER, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	origDER, _ := x509.MarshalPKIXPublicKey(csr.PublicKey.(*ecdsa.PublicKey))
	i := strings.Index(string(der), string(origDER))
	if i < 0 || len(otherDER) != len(origDER) {
		t.Fatal("cannot locate public key in CSR")
	}
	copy(der[i:], otherDER)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return firstCert(t, b)
}

func firstCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	certs, err := pki.ParseCertsPEM(b)
	if err != nil || len(certs) == 0 {
		t.Fatalf("parse certs: %v", err)
	}
	return certs[0]
}

func verify(t *testing.T, leaf, ca *x509.Certificate, usage x509.ExtKeyUsage) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("verify %s: %v", leaf.Subject.CommonName, err)
	}
}
