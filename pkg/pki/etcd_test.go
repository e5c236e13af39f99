package pki

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

func mustEnsureEtcd(t *testing.T, tlsDir string, opts EtcdOptions) *EtcdPKI {
	t.Helper()
	p, err := EnsureEtcd(tlsDir, opts)
	if err != nil {
		t.Fatalf("EnsureEtcd: %v", err)
	}
	return p
}

func etcdCAFiles(p *EtcdPKI) []string {
	return []string{p.ServerCACert, p.ServerCAKey, p.PeerCACert, p.PeerCAKey}
}

func etcdFiles(p *EtcdPKI) []string {
	return append(etcdCAFiles(p), p.ServerCert, p.ServerKey, p.PeerCert, p.PeerKey, p.ClientCert, p.ClientKey)
}

func snapshotFiles(t *testing.T, files []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range files {
		out[f] = string(mustRead(t, f))
	}
	return out
}

// refusedBy checks that leaf does not pass for a certificate of caPath.
func refusedBy(t *testing.T, leaf *x509.Certificate, caPath string) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, caPath))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Errorf("certificate %q verifies against %s", leaf.Subject.CommonName, filepath.Base(caPath))
	}
}

func TestEnsureEtcdCreatesEverything(t *testing.T) {
	tlsDir := filepath.Join(t.TempDir(), "tls")
	opts := EtcdOptions{DNSNames: []string{"server-1.example"}, IPs: []net.IP{net.ParseIP("10.0.0.5")}}
	p := mustEnsureEtcd(t, tlsDir, opts)

	if *p != *EtcdFiles(tlsDir) {
		t.Errorf("EnsureEtcd's files %+v differ from EtcdFiles' %+v", *p, *EtcdFiles(tlsDir))
	}
	if p.Dir != filepath.Join(tlsDir, "etcd") || fileMode(t, p.Dir) != 0o700 {
		t.Errorf("dir %s: want %s/etcd with mode 0700, got mode %o", p.Dir, tlsDir, fileMode(t, p.Dir))
	}
	for _, f := range []string{p.ServerCAKey, p.PeerCAKey, p.ServerKey, p.PeerKey, p.ClientKey} {
		if m := fileMode(t, f); m != 0o600 {
			t.Errorf("%s: mode %o, want 0600", filepath.Base(f), m)
		}
	}

	server, peer, client := readCert(t, p.ServerCert), readCert(t, p.PeerCert), readCert(t, p.ClientCert)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		verifyWith(t, server, p.ServerCACert, u)
		verifyWith(t, peer, p.PeerCACert, u)
	}
	verifyWith(t, client, p.ServerCACert, x509.ExtKeyUsageClientAuth)
	if client.Subject.CommonName != "skiff-etcd-client" || slices.Contains(client.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("client certificate: CN %q, usages %v", client.Subject.CommonName, client.ExtKeyUsage)
	}
	// Each CA vouches for its own side only: a client certificate is no peer.
	refusedBy(t, client, p.PeerCACert)
	refusedBy(t, server, p.PeerCACert)
	refusedBy(t, peer, p.ServerCACert)

	for _, c := range []*x509.Certificate{server, peer} {
		for _, name := range []string{"localhost", "server-1.example"} {
			if !slices.Contains(c.DNSNames, name) {
				t.Errorf("%q lacks DNS SAN %q: %v", c.Subject.CommonName, name, c.DNSNames)
			}
		}
		for _, ip := range []string{"127.0.0.1", "::1", "10.0.0.5"} {
			if !slices.ContainsFunc(c.IPAddresses, net.ParseIP(ip).Equal) {
				t.Errorf("%q lacks IP SAN %s: %v", c.Subject.CommonName, ip, c.IPAddresses)
			}
		}
	}
}

func TestEnsureEtcdIsIdempotent(t *testing.T) {
	tlsDir := t.TempDir()
	p := mustEnsureEtcd(t, tlsDir, EtcdOptions{DNSNames: []string{"b.example", "a.example"}, IPs: []net.IP{net.ParseIP("10.0.0.5")}})
	before := snapshotFiles(t, etcdFiles(p))

	mustEnsureEtcd(t, tlsDir, EtcdOptions{DNSNames: []string{"A.example", "b.example"}, IPs: []net.IP{net.ParseIP("10.0.0.5").To4()}})
	for f, b := range snapshotFiles(t, etcdFiles(p)) {
		if before[f] != b {
			t.Errorf("%s changed on the second EnsureEtcd", filepath.Base(f))
		}
	}
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(before) {
		t.Errorf("dir has %d entries, want %d (leftover temp files?)", len(entries), len(before))
	}

	mustEnsureEtcd(t, tlsDir, EtcdOptions{IPs: []net.IP{net.ParseIP("10.0.0.6")}})
	after := snapshotFiles(t, etcdFiles(p))
	for _, f := range []string{p.ServerCert, p.PeerCert} {
		if after[f] == before[f] {
			t.Errorf("%s not re-issued after its SANs changed", filepath.Base(f))
		}
	}
	for _, f := range append(etcdCAFiles(p), p.ServerKey, p.PeerKey, p.ClientKey, p.ClientCert) {
		if after[f] != before[f] {
			t.Errorf("%s changed although only the SANs did", filepath.Base(f))
		}
	}
}

// copyFiles writes the named files of from to the same places under to.
func copyFiles(t *testing.T, from, to *EtcdPKI, pick func(*EtcdPKI) []string) {
	t.Helper()
	src, dst := pick(from), pick(to)
	if err := os.MkdirAll(to.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if err := fileutil.WriteAtomic(dst[i], mustRead(t, src[i]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEnsureEtcdOnAJoiningServerUsesTheClusterCAs(t *testing.T) {
	cluster := mustEnsureEtcd(t, t.TempDir(), EtcdOptions{})

	joining := EtcdFiles(t.TempDir())
	copyFiles(t, cluster, joining, etcdCAFiles)
	mustEnsureEtcd(t, filepath.Dir(joining.Dir), EtcdOptions{})
	for f, b := range snapshotFiles(t, etcdCAFiles(joining)) {
		if b != string(mustRead(t, filepath.Join(cluster.Dir, filepath.Base(f)))) {
			t.Errorf("%s is not the cluster's", filepath.Base(f))
		}
	}
	verifyWith(t, readCert(t, joining.ServerCert), cluster.ServerCACert, x509.ExtKeyUsageServerAuth)
	verifyWith(t, readCert(t, joining.PeerCert), cluster.PeerCACert, x509.ExtKeyUsageClientAuth)
	verifyWith(t, readCert(t, joining.ClientCert), cluster.ServerCACert, x509.ExtKeyUsageClientAuth)
}

func TestEnsureEtcdReissuesLeavesWhenTheCAsAreReplaced(t *testing.T) {
	tlsDir := t.TempDir()
	p := mustEnsureEtcd(t, tlsDir, EtcdOptions{})
	before := snapshotFiles(t, etcdFiles(p))

	other := mustEnsureEtcd(t, t.TempDir(), EtcdOptions{})
	copyFiles(t, other, p, etcdCAFiles)
	mustEnsureEtcd(t, tlsDir, EtcdOptions{})
	after := snapshotFiles(t, etcdFiles(p))
	for _, f := range []string{p.ServerCert, p.PeerCert, p.ClientCert} {
		if after[f] == before[f] {
			t.Errorf("%s not re-issued for the new CA", filepath.Base(f))
		}
	}
	for _, f := range []string{p.ServerKey, p.PeerKey, p.ClientKey} {
		if after[f] != before[f] {
			t.Errorf("%s replaced: keys outlive their certificates", filepath.Base(f))
		}
	}
	verifyWith(t, readCert(t, p.ServerCert), other.ServerCACert, x509.ExtKeyUsageServerAuth)
	verifyWith(t, readCert(t, p.PeerCert), other.PeerCACert, x509.ExtKeyUsageServerAuth)
	verifyWith(t, readCert(t, p.ClientCert), other.ServerCACert, x509.ExtKeyUsageClientAuth)
}

func TestRotateKeepsEveryUsage(t *testing.T) {
	tlsDir := t.TempDir()
	p := mustEnsure(t, tlsDir, ServerOptions{})
	ca, err := loadCA(p.ServerCACert, p.ServerCAKey)
	if err != nil {
		t.Fatal(err)
	}
	c := ManagedCert{Service: "both", Cert: filepath.Join(tlsDir, "both.crt"), Key: filepath.Join(tlsDir, "both.key")}
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if err := ensureLeaf(c.Cert, c.Key, ca, leafSpec{commonName: "both", usages: usages}); err != nil {
		t.Fatal(err)
	}
	before := readCert(t, c.Cert)
	if err := Rotate(c, tlsDir); err != nil {
		t.Fatal(err)
	}
	after := readCert(t, c.Cert)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("not re-issued")
	}
	if !slices.Equal(after.ExtKeyUsage, usages) {
		t.Errorf("re-issued with usages %v, want %v", after.ExtKeyUsage, usages)
	}
}
