package supervisor

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-io/skiff/pkg/pki"
)

func TestKubeletCAMigrationEndsWhenEveryKubeletServesANewCertificate(t *testing.T) {
	dir := t.TempDir()
	p, err := pki.EnsureServer(dir, pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A data dir from before the kubelet-serving CA: the next start migrates.
	for _, f := range []string{p.KubeletServingCACert, p.KubeletServingCAKey, p.KubeletTrustBundle} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if p, err = pki.EnsureServer(dir, pki.ServerOptions{}); err != nil {
		t.Fatal(err)
	}

	// A kubelet that still serves a certificate from the server CA.
	legacy, err := tls.LoadX509KeyPair(p.ServingCert, p.ServingKey)
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[tls.Certificate]
	current.Store(&legacy)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	cs := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Status: corev1.NodeStatus{
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		},
	})
	m := &KubeletCAMigration{PKI: p, Nodes: startCache(t, cs), Every: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done, err := m.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()

	time.Sleep(200 * time.Millisecond)
	if still, _ := p.LegacyKubeletServing(); !still {
		t.Fatal("the migration ended while a kubelet still serves a certificate from the server CA")
	}

	// The node restarts and gets its certificate from the kubelet-serving CA.
	key, _ := pki.GenerateKey()
	chain, err := p.SignKubeletServingCert("node-1", []string{"node-1"}, []net.IP{net.ParseIP("127.0.0.1")}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	fresh, err := tls.X509KeyPair(chain, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	current.Store(&fresh)
	eventually(t, func() bool { still, _ := p.LegacyKubeletServing(); return !still }, "the migration did not end once every kubelet serves a new certificate")
	bundle, err := os.ReadFile(p.KubeletTrustBundle)
	if err != nil {
		t.Fatal(err)
	}
	if certs, err := pki.ParseCertsPEM(bundle); err != nil || len(certs) != 1 {
		t.Fatalf("the kubelet trust bundle still holds %d certificates (%v)", len(certs), err)
	}
}
