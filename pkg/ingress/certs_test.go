package ingress

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// servedCertificate performs a TLS handshake against config with the given
// SNI name and returns the certificate the server presented.
func servedCertificate(t *testing.T, config *tls.Config, serverName string) *x509.Certificate {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", config)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.(*tls.Conn).Handshake()
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // the test inspects the certificate itself
	})
	if err != nil {
		t.Fatalf("handshake for %q: %v", serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func TestServingCertificateIsChosenBySNI(t *testing.T) {
	shopCert, shopKey := selfSignedPEM(t, "shop.test")
	wildcardCert, wildcardKey := selfSignedPEM(t, "*.apps.test")
	sanCert, sanKey := selfSignedPEM(t, "sans.test", "also.sans.test")
	// Claims shop.test by its own name only; the Ingress that lists
	// shop.test in spec.tls keeps it.
	rivalCert, rivalKey := selfSignedPEM(t, "rival.test", "shop.test")
	builder := newTestBuilder(t,
		newTLSSecret("web", "shop", shopCert, shopKey),
		newTLSSecret("web", "wildcard", wildcardCert, wildcardKey),
		newTLSSecret("web", "sans", sanCert, sanKey),
		newTLSSecret("web", "rival", rivalCert, rivalKey),
	)
	rival := newIngress("web", "rival", testTime)
	rival.Spec.TLS = []networkingv1.IngressTLS{{SecretName: "rival"}}
	site := newIngress("web", "site", testTime.Add(time.Minute))
	site.Spec.TLS = []networkingv1.IngressTLS{
		{Hosts: []string{"shop.test"}, SecretName: "shop"},
		{Hosts: []string{"*.apps.test"}, SecretName: "wildcard"},
		{SecretName: "sans"},
	}
	config, problems := builder.build([]*networkingv1.Ingress{rival, site})
	if len(problems) != 0 {
		t.Fatalf("unexpected problems %+v", problems)
	}
	fallback, err := newFallbackCertificate()
	if err != nil {
		t.Fatal(err)
	}
	controller := &Controller{fallback: fallback}
	controller.config.Store(config)
	tlsConfig := controller.TLSConfig()

	tests := []struct {
		serverName string
		wantName   string
	}{
		{"shop.test", "shop.test"},
		{"SHOP.test", "shop.test"},
		{"rival.test", "rival.test"},
		{"one.apps.test", "*.apps.test"},
		{"also.sans.test", "sans.test"},
		{"sans.test", "sans.test"},
		// A wildcard covers one label only.
		{"deep.one.apps.test", fallbackCommonName},
		{"apps.test", fallbackCommonName},
		{"unknown.test", fallbackCommonName},
		{"", fallbackCommonName},
	}
	for _, tt := range tests {
		got := servedCertificate(t, tlsConfig, tt.serverName)
		if got.Subject.CommonName != tt.wantName {
			t.Errorf("SNI %q got certificate %q, want %q", tt.serverName, got.Subject.CommonName, tt.wantName)
		}
	}
}

func TestServingCertificateFollowsConfigurationSwap(t *testing.T) {
	fallback, err := newFallbackCertificate()
	if err != nil {
		t.Fatal(err)
	}
	controller := &Controller{fallback: fallback}
	tlsConfig := controller.TLSConfig()
	if got := servedCertificate(t, tlsConfig, "late.test"); got.Subject.CommonName != fallbackCommonName {
		t.Fatalf("before any configuration got %q", got.Subject.CommonName)
	}

	certPEM, keyPEM := selfSignedPEM(t, "late.test")
	builder := newTestBuilder(t, newTLSSecret("default", "late", certPEM, keyPEM))
	ing := newIngress("default", "late", testTime)
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"late.test"}, SecretName: "late"}}
	config, _ := builder.build([]*networkingv1.Ingress{ing})
	controller.config.Store(config)

	if got := servedCertificate(t, tlsConfig, "late.test"); got.Subject.CommonName != "late.test" {
		t.Errorf("after the swap got %q, want late.test", got.Subject.CommonName)
	}
}

func TestFallbackCertificateIsSelfSigned(t *testing.T) {
	cert, err := newFallbackCertificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil || leaf.Issuer.String() != leaf.Subject.String() {
		t.Errorf("fallback certificate is not self-signed: %v", err)
	}
	if time.Until(cert.Leaf.NotAfter) < 365*24*time.Hour {
		t.Errorf("fallback certificate expires too soon: %v", cert.Leaf.NotAfter)
	}
}
