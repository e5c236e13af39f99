package cli

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/pki"
)

func TestCertificateCheckFailsWithin30Days(t *testing.T) {
	isolate(t)
	dataDir := t.TempDir()
	p, err := pki.EnsureServer(layout.New(dataDir).Server.TLSDir, pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, "certificate", "check", "--config", "", "--data-dir", dataDir)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 12 || !strings.Contains(r.stdout, "kubelet-serving-ca") {
		t.Fatalf("a fresh server: code %d, stdout:\n%s\nstderr %q", r.code, r.stdout, r.stderr)
	}

	// The scheduler's certificate expires in 10 days: check says so and fails.
	writeShortLived(t, p.SchedulerCert, p.ClientCACert, p.ClientCAKey, 10*24*time.Hour)
	r = run(t, "certificate", "check", "--config", "", "--data-dir", dataDir)
	if r.code != 1 || !strings.Contains(r.stdout, "EXPIRES in 9 days") || !strings.Contains(r.stderr, p.SchedulerCert) || !strings.Contains(r.stderr, "skiff certificate rotate") {
		t.Fatalf("an expiring certificate: code %d, stdout:\n%s\nstderr %q", r.code, r.stdout, r.stderr)
	}
	// Rotating it fixes that.
	if r := run(t, "certificate", "rotate", "--config", "", "--data-dir", dataDir, "--service", "scheduler"); r.code != 0 || !strings.Contains(r.stdout, "scheduler: ") {
		t.Fatalf("rotate: code %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "certificate", "check", "--config", "", "--data-dir", dataDir); r.code != 0 {
		t.Fatalf("after rotate: code %d, stdout:\n%s", r.code, r.stdout)
	}
}

// writeShortLived replaces certPath with a certificate for its key and
// subject that expires in left, signed by the given CA.
func writeShortLived(t *testing.T, certPath, caCert, caKey string, left time.Duration) {
	t.Helper()
	read := func(path string) *pem.Block {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		return block
	}
	old, err := x509.ParseCertificate(read(certPath).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(read(caCert).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParseECPrivateKey(read(caKey).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: old.Subject.CommonName, Organization: old.Subject.Organization},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(left),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  old.ExtKeyUsage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, old.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
