package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestManagedCertsAndRotate(t *testing.T) {
	dir := t.TempDir()
	tlsDir, credDir := filepath.Join(dir, "tls"), filepath.Join(dir, "cred")
	p := mustEnsure(t, tlsDir, ServerOptions{DNSNames: []string{"api.example"}})
	if err := os.MkdirAll(credDir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, _ := GenerateKey()
	chain, err := p.SignKubeletServingCert("node-1", []string{"node-1"}, nil, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	nodeCert := filepath.Join(credDir, NodeKubeletServing+".crt")
	nodeKey := filepath.Join(credDir, NodeKubeletServing+".key")
	for _, f := range []string{nodeCert, nodeKey} {
		if err := os.WriteFile(f, chain, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	certs, err := ManagedCerts(tlsDir, credDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := Services(certs); !slices.Equal(got, []string{"kube-apiserver", "admin", "controller-manager", "scheduler", "auth-proxy", "metrics-server", "kubelet"}) {
		t.Fatalf("services %v", got)
	}
	if len(certs) != 13 {
		t.Fatalf("%d certificates listed, want 5 CAs, 7 server leaves and the node's one", len(certs))
	}

	before := readCert(t, p.ServingCert)
	keyBefore := mustRead(t, p.ServingKey)
	for _, c := range certs {
		err := Rotate(c, tlsDir)
		if c.CA != (err != nil) {
			t.Errorf("rotate %s (CA %v): %v", c.Cert, c.CA, err)
		}
	}
	after := readCert(t, p.ServingCert)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("the serving certificate was not re-issued")
	}
	if !slices.Equal(after.DNSNames, before.DNSNames) || after.Subject.CommonName != before.Subject.CommonName {
		t.Fatalf("the re-issued certificate names %v, was %v", after.DNSNames, before.DNSNames)
	}
	if string(mustRead(t, p.ServingKey)) != string(keyBefore) {
		t.Fatal("rotating a server leaf replaced its key: a running apiserver could read a mismatched pair")
	}
	verifyWith(t, after, p.ServerCACert, after.ExtKeyUsage[0])
	verifyWith(t, readCert(t, p.AdminCert), p.ClientCACert, readCert(t, p.AdminCert).ExtKeyUsage[0])
	for _, f := range []string{nodeCert, nodeKey} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("node file %s not removed: %v", f, err)
		}
	}
	// The next start keeps the rotated leaves: they are current.
	mustEnsure(t, tlsDir, ServerOptions{DNSNames: []string{"api.example"}})
	if readCert(t, p.ServingCert).SerialNumber.Cmp(after.SerialNumber) != 0 {
		t.Fatal("the restart re-issued the rotated certificate again")
	}
}

func TestLeavesRenewWithin120DaysOfExpiry(t *testing.T) {
	dir := t.TempDir()
	p := mustEnsure(t, dir, ServerOptions{})
	ca, err := loadCA(p.ClientCACert, p.ClientCAKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := mustRead(t, p.AdminKey)
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// writeAdmin replaces the admin certificate with one that expires in left.
	writeAdmin := func(left time.Duration) *x509.Certificate {
		t.Helper()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: "system:admin", Organization: []string{"system:masters"}},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(left),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.AdminCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return readCert(t, p.AdminCert)
	}

	kept := writeAdmin(RenewBefore + 10*24*time.Hour)
	mustEnsure(t, dir, ServerOptions{})
	if got := readCert(t, p.AdminCert); got.SerialNumber.Cmp(kept.SerialNumber) != 0 {
		t.Fatal("a certificate with more than 120 days left was re-issued")
	}
	old := writeAdmin(RenewBefore - 10*24*time.Hour)
	mustEnsure(t, dir, ServerOptions{})
	renewed := readCert(t, p.AdminCert)
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || time.Until(renewed.NotAfter) < RenewBefore {
		t.Fatalf("a certificate with 110 days left was not renewed (expires %s)", renewed.NotAfter)
	}
	if string(mustRead(t, p.AdminKey)) != string(keyPEM) {
		t.Fatal("renewal replaced the key")
	}
}
