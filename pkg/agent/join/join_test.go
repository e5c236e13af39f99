package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/supervisor"
)

// testServer is a supervisor on TLS with the server's real serving
// certificate, recording which paths were asked with credentials.
type testServer struct {
	url   string
	token pki.Token
	mu    sync.Mutex
	authd []string
}

func newTestServer(t *testing.T) *testServer {
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
	sup := &supervisor.Supervisor{PKI: certs, Token: tok, Cluster: supervisor.ClusterConfig{
		ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10",
		ClusterDomain: "cluster.local", FlannelBackend: "vxlan",
	}}
	clientset := fake.NewClientset()
	sup.Passwords = &supervisor.NodePasswords{Client: func() (kubernetes.Interface, error) { return clientset, nil }}
	ts := &testServer{token: tok}
	handler := sup.Wrap(http.NotFoundHandler())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); ok {
			ts.mu.Lock()
			ts.authd = append(ts.authd, r.URL.Path)
			ts.mu.Unlock()
		}
		handler.ServeHTTP(w, r)
	}))
	cert, err := tls.LoadX509KeyPair(certs.ServingCert, certs.ServingKey)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ts.url = srv.URL
	return ts
}

func (ts *testServer) credentialRequests() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.authd...)
}

func joinWith(t *testing.T, ts *testServer, token string) (*Credentials, string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cred")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Join(ctx, Options{
		ServerURL: ts.url,
		Token:     token,
		NodeName:  "node-1",
		NodeIPs:   []net.IP{net.ParseIP("192.0.2.7")},
		Dir:       dir,
	})
	return c, dir, err
}

func TestJoinObtainsCredentials(t *testing.T) {
	ts := newTestServer(t)
	c, dir, err := joinWith(t, ts, ts.token.String())
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.ClusterDNS != "10.43.0.10" || c.Cluster.FlannelBackend != "vxlan" {
		t.Errorf("cluster config %+v", c.Cluster)
	}
	for _, f := range []string{"client-kubelet.key", "client-kubelet.crt", "client-kube-proxy.key", "serving-kubelet.key", "kubelet.kubeconfig", "kube-proxy.kubeconfig"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	certs := loadCert(t, filepath.Join(dir, "client-kubelet.crt"))
	if certs.Subject.CommonName != "system:node:node-1" || len(certs.Subject.Organization) != 1 || certs.Subject.Organization[0] != "system:nodes" {
		t.Errorf("kubelet client cert subject %v", certs.Subject)
	}
	serving := loadCert(t, c.ServingCert)
	if len(serving.IPAddresses) != 1 || !serving.IPAddresses[0].Equal(net.ParseIP("192.0.2.7")) {
		t.Errorf("serving cert IPs %v, want the node IP", serving.IPAddresses)
	}

	// A restart keeps the node's keys.
	before, _ := os.ReadFile(filepath.Join(dir, "client-kubelet.key"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := Join(ctx, Options{ServerURL: ts.url, Token: ts.token.String(), NodeName: "node-1", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "client-kubelet.key"))
	if string(before) != string(after) {
		t.Error("joining again replaced the node's private key")
	}
	if fi, err := os.Stat(filepath.Join(dir, "node-password")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node password file: %v %v", fi, err)
	}

	// Another host (another data dir, so another node password) cannot
	// take the name; the test server has no Node, so the message names the
	// first host's claim.
	_, _, err = joinWith(t, ts, ts.token.String())
	if err == nil || !strings.Contains(err.Error(), `node name "node-1" was taken by another host`) {
		t.Fatalf("second host with the same node name: err = %v", err)
	}
}

func TestJoinRefusesForeignCABeforeSendingCredentials(t *testing.T) {
	ts := newTestServer(t)
	other := ts.token
	other.CAHash = strings.Repeat("ab", 32)
	_, _, err := joinWith(t, ts, other.String())
	if err == nil || !strings.Contains(err.Error(), "does not match the join token's hash") {
		t.Fatalf("err = %v, want a CA mismatch", err)
	}
	if got := ts.credentialRequests(); len(got) != 0 {
		t.Fatalf("the token was sent to a server whose CA did not match: %v", got)
	}
}

func TestJoinRefusesWrongToken(t *testing.T) {
	ts := newTestServer(t)
	wrong := ts.token
	wrong.Password = "not-the-secret"
	_, dir, err := joinWith(t, ts, wrong.String())
	if err == nil || !strings.Contains(err.Error(), "refused the join token") {
		t.Fatalf("err = %v, want the token refused", err)
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatal("the error message contains the token secret")
	}
	if _, err := os.Stat(filepath.Join(dir, "kubelet.kubeconfig")); !os.IsNotExist(err) {
		t.Fatal("a kubeconfig was written although the token was refused")
	}
}

func TestJoinWithBareSecret(t *testing.T) {
	ts := newTestServer(t)
	if _, _, err := joinWith(t, ts, ts.token.Password); err != nil {
		t.Fatalf("bare secret: %v", err)
	}
}

func TestJoinGivesUpWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Join(ctx, Options{ServerURL: "https://" + addr, Token: "secret", NodeName: "n", Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want the last connection error", err)
	}
}

// The attempt that the deadline interrupts fails with the context's error;
// the reported cause must still be the error of the attempt before it.
func TestRetryReportsTheCauseBeforeTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	attempts := 0
	err := retry(ctx, func() error {
		attempts++
		if attempts == 1 {
			return errors.New("dial tcp: connection refused")
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v after %d attempts, want the connection error", err, attempts)
	}
}

func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertsPEM(b)
	if err != nil || len(certs) == 0 {
		t.Fatalf("parse %s: %v", path, err)
	}
	return certs[0]
}
