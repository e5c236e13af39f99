package pki

import (
	"crypto/rsa"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

func mustEnsure(t *testing.T, dir string, opts ServerOptions) *ServerPKI {
	t.Helper()
	p, err := EnsureServer(dir, opts)
	if err != nil {
		t.Fatalf("EnsureServer: %v", err)
	}
	return p
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCertsPEM(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return certs[0]
}

func verifyWith(t *testing.T, leaf *x509.Certificate, caPath string, usage x509.ExtKeyUsage) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, caPath))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("certificate %q does not verify against %s: %v", leaf.Subject.CommonName, filepath.Base(caPath), err)
	}
}

func keyFiles(p *ServerPKI) []string {
	return []string{p.ServerCAKey, p.KubeletServingCAKey, p.ClientCAKey, p.RequestHeaderCAKey, p.ServiceAccountKey, p.ServingKey,
		p.AdminKey, p.ControllerManagerKey, p.SchedulerKey, p.KubeletClientKey, p.AuthProxyKey, p.AddonServingCAKey, p.MetricsServerKey}
}

func certFiles(p *ServerPKI) []string {
	return []string{p.ServerCACert, p.KubeletServingCACert, p.KubeletTrustBundle, p.ClientCACert, p.RequestHeaderCACert, p.ServingCert,
		p.AdminCert, p.ControllerManagerCert, p.SchedulerCert, p.KubeletClientCert, p.AuthProxyCert, p.AddonServingCACert, p.MetricsServerCert}
}

func snapshot(t *testing.T, p *ServerPKI) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range append(keyFiles(p), certFiles(p)...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = string(b)
	}
	return out
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestEnsureServerCreatesEverything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	opts := ServerOptions{DNSNames: []string{"api.example.com"}, IPs: []net.IP{net.ParseIP("10.0.0.5")}, ClusterDomain: "corp.local"}
	p := mustEnsure(t, dir, opts)

	if !filepath.IsAbs(p.Dir) || fileMode(t, p.Dir) != 0o700 {
		t.Errorf("dir %s: want absolute path with mode 0700, got mode %o", p.Dir, fileMode(t, p.Dir))
	}
	for _, f := range keyFiles(p) {
		if !filepath.IsAbs(f) {
			t.Errorf("%s is not absolute", f)
		}
		if m := fileMode(t, f); m != 0o600 {
			t.Errorf("%s: mode %o, want 0600", f, m)
		}
	}
	for _, f := range certFiles(p) {
		if m := fileMode(t, f); m != 0o644 {
			t.Errorf("%s: mode %o, want 0644", f, m)
		}
	}
	saBytes, err := os.ReadFile(p.ServiceAccountKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := parsePrivateKeyPEM(saBytes)
	if err != nil {
		t.Fatal(err)
	}
	if rk, ok := saKey.(*rsa.PrivateKey); !ok || rk.N.BitLen() != 2048 {
		t.Errorf("service account key: want RSA 2048, got %T", saKey)
	}

	serving := readCert(t, p.ServingCert)
	for _, name := range []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.corp.local", "api.example.com"} {
		if !slices.Contains(serving.DNSNames, name) {
			t.Errorf("serving cert lacks DNS SAN %q: %v", name, serving.DNSNames)
		}
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.0.0.5"} {
		if !slices.ContainsFunc(serving.IPAddresses, net.ParseIP(ip).Equal) {
			t.Errorf("serving cert lacks IP SAN %s: %v", ip, serving.IPAddresses)
		}
	}
	verifyWith(t, serving, p.ServerCACert, x509.ExtKeyUsageServerAuth)
	if serving.NotAfter.Sub(serving.NotBefore) > 366*24*time.Hour {
		t.Errorf("serving cert valid longer than a year: %v", serving.NotAfter)
	}

	admin := readCert(t, p.AdminCert)
	if admin.Subject.CommonName != "system:admin" || !slices.Equal(admin.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("admin subject = %v", admin.Subject)
	}
	verifyWith(t, admin, p.ClientCACert, x509.ExtKeyUsageClientAuth)

	for path, cn := range map[string]string{
		p.ControllerManagerCert: "system:kube-controller-manager",
		p.SchedulerCert:         "system:kube-scheduler",
		p.KubeletClientCert:     "system:kube-apiserver",
	} {
		c := readCert(t, path)
		if c.Subject.CommonName != cn {
			t.Errorf("%s: CN %q, want %q", path, c.Subject.CommonName, cn)
		}
		verifyWith(t, c, p.ClientCACert, x509.ExtKeyUsageClientAuth)
	}

	proxy := readCert(t, p.AuthProxyCert)
	if proxy.Subject.CommonName != "system:auth-proxy" {
		t.Errorf("auth proxy CN = %q", proxy.Subject.CommonName)
	}
	verifyWith(t, proxy, p.RequestHeaderCACert, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, p.ClientCACert))
	if _, err := proxy.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("auth proxy cert must not verify against the client CA")
	}

	metrics := readCert(t, p.MetricsServerCert)
	if !slices.Equal(metrics.DNSNames, []string{MetricsServerName}) {
		t.Errorf("metrics-server cert names %v, want only %s", metrics.DNSNames, MetricsServerName)
	}
	verifyWith(t, metrics, p.AddonServingCACert, x509.ExtKeyUsageServerAuth)
	pool = x509.NewCertPool()
	pool.AddCert(readCert(t, p.ServerCACert))
	if _, err := metrics.Verify(x509.VerifyOptions{Roots: pool, DNSName: MetricsServerName}); err == nil {
		t.Error("metrics-server cert must not verify against the server CA")
	}

	ca := readCert(t, p.ServerCACert)
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < 9*365*24*time.Hour {
		t.Errorf("server CA: IsCA=%v validity %v", ca.IsCA, ca.NotAfter.Sub(ca.NotBefore))
	}
	bundle, err := p.ServerCABundle()
	if err != nil {
		t.Fatal(err)
	}
	if string(bundle) != snapshot(t, p)[p.ServerCACert] {
		t.Error("ServerCABundle differs from server-ca.crt")
	}
}

func TestEnsureServerIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	opts := ServerOptions{DNSNames: []string{"b.example", "a.example"}, IPs: []net.IP{net.ParseIP("10.0.0.5")}}
	p := mustEnsure(t, dir, opts)
	before := snapshot(t, p)

	// Same SANs in another order and representation must not count as a change.
	opts2 := ServerOptions{DNSNames: []string{"A.example", "b.example"}, IPs: []net.IP{net.ParseIP("10.0.0.5").To4()}}
	p = mustEnsure(t, dir, opts2)
	after := snapshot(t, p)
	for f, b := range before {
		if after[f] != b {
			t.Errorf("%s changed on second EnsureServer", filepath.Base(f))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(before) {
		t.Errorf("dir has %d entries, want %d (leftover temp files?)", len(entries), len(before))
	}
}

func TestEnsureServerReissuesOnSANChange(t *testing.T) {
	dir := t.TempDir()
	opts := ServerOptions{IPs: []net.IP{net.ParseIP("10.0.0.5")}, DNSNames: []string{"old.example"}}
	p := mustEnsure(t, dir, opts)
	before := snapshot(t, p)

	opts.IPs = append(opts.IPs, net.ParseIP("192.168.1.9"))
	p = mustEnsure(t, dir, opts)
	after := snapshot(t, p)
	if after[p.ServingCert] == before[p.ServingCert] {
		t.Fatal("serving cert not re-issued after adding an IP SAN")
	}
	serving := readCert(t, p.ServingCert)
	if !slices.ContainsFunc(serving.IPAddresses, net.ParseIP("192.168.1.9").Equal) {
		t.Errorf("new IP missing from %v", serving.IPAddresses)
	}
	verifyWith(t, serving, p.ServerCACert, x509.ExtKeyUsageServerAuth)
	for _, f := range []string{p.ServerCACert, p.ServerCAKey, p.ClientCACert, p.AdminCert, p.ServiceAccountKey} {
		if after[f] != before[f] {
			t.Errorf("%s changed although only the serving SANs did", filepath.Base(f))
		}
	}

	opts.DNSNames = nil
	p = mustEnsure(t, dir, opts)
	final := snapshot(t, p)
	if final[p.ServingCert] == after[p.ServingCert] {
		t.Fatal("serving cert not re-issued after removing a DNS SAN")
	}
	if slices.Contains(readCert(t, p.ServingCert).DNSNames, "old.example") {
		t.Error("removed DNS SAN still present")
	}
	if final[p.ServerCACert] != before[p.ServerCACert] {
		t.Error("server CA changed")
	}
}

func TestEnsureServerFixesModes(t *testing.T) {
	dir := t.TempDir()
	p := mustEnsure(t, dir, ServerOptions{})
	for _, f := range []string{p.AdminKey, p.ServerCAKey, p.ServiceAccountKey} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(p.ServingCert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, dir, ServerOptions{})
	for _, f := range []string{p.AdminKey, p.ServerCAKey, p.ServiceAccountKey} {
		if m := fileMode(t, f); m != 0o600 {
			t.Errorf("%s: mode %o, want 0600", filepath.Base(f), m)
		}
	}
	if m := fileMode(t, p.ServingCert); m != 0o644 {
		t.Errorf("serving cert mode %o, want 0644", m)
	}
	if m := fileMode(t, dir); m != 0o700 {
		t.Errorf("dir mode %o, want 0700", m)
	}
}

func TestEnsureServerReissuesClientCertsWhenInvalid(t *testing.T) {
	dir := t.TempDir()
	p := mustEnsure(t, dir, ServerOptions{})
	before := snapshot(t, p)

	// A client cert signed by a foreign CA must be replaced.
	other := mustEnsure(t, t.TempDir(), ServerOptions{})
	foreign, err := os.ReadFile(other.AdminCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := fileutil.WriteAtomic(p.AdminCert, foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.SchedulerCert); err != nil {
		t.Fatal(err)
	}
	mustEnsure(t, dir, ServerOptions{})
	after := snapshot(t, p)
	verifyWith(t, readCert(t, p.AdminCert), p.ClientCACert, x509.ExtKeyUsageClientAuth)
	verifyWith(t, readCert(t, p.SchedulerCert), p.ClientCACert, x509.ExtKeyUsageClientAuth)
	if after[p.AdminKey] != before[p.AdminKey] || after[p.ClientCACert] != before[p.ClientCACert] {
		t.Error("keys or CA changed while re-issuing client certs")
	}
}

func TestEnsureServerRejectsHalfCA(t *testing.T) {
	dir := t.TempDir()
	p := mustEnsure(t, dir, ServerOptions{})
	if err := os.Remove(p.ClientCAKey); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureServer(dir, ServerOptions{}); err == nil {
		t.Fatal("EnsureServer silently accepted a CA certificate without key")
	}
}

func TestSignCerts(t *testing.T) {
	p := mustEnsure(t, t.TempDir(), ServerOptions{})
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}

	chain, err := p.SignClientCert("system:node:n1", []string{"system:nodes"}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCertsPEM(chain)
	if err != nil || len(certs) != 2 {
		t.Fatalf("client chain: %d certs, err %v", len(certs), err)
	}
	leaf := certs[0]
	if leaf.Subject.CommonName != "system:node:n1" || !slices.Equal(leaf.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("client subject = %v", leaf.Subject)
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		t.Error("client cert has a different public key")
	}
	if !certs[1].Equal(readCert(t, p.ClientCACert)) {
		t.Error("second cert in client chain is not the client CA")
	}
	verifyWith(t, leaf, p.ClientCACert, x509.ExtKeyUsageClientAuth)
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("client ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}

	chain, err = p.SignKubeletServingCert("node-1", []string{"node-1"}, []net.IP{net.ParseIP("10.1.2.3")}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	certs, err = ParseCertsPEM(chain)
	if err != nil || len(certs) != 2 {
		t.Fatalf("serving chain: %d certs, err %v", len(certs), err)
	}
	leaf = certs[0]
	if !certs[1].Equal(readCert(t, p.KubeletServingCACert)) {
		t.Error("second cert in serving chain is not the kubelet-serving CA")
	}
	verifyWith(t, leaf, p.KubeletServingCACert, x509.ExtKeyUsageServerAuth)
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("serving ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}
	if err := leaf.VerifyHostname("node-1"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("10.1.2.3"); err != nil {
		t.Error(err)
	}
	// What pods and kubelets trust (the server CA) and what clients are
	// checked with (the client CA) must both refuse a kubelet's certificate.
	for _, ca := range []string{p.ClientCACert, p.ServerCACert} {
		pool := x509.NewCertPool()
		pool.AddCert(readCert(t, ca))
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err == nil {
			t.Errorf("kubelet serving cert verifies against %s", filepath.Base(ca))
		}
	}
}

func TestKubeletTrustBundle(t *testing.T) {
	p := mustEnsure(t, t.TempDir(), ServerOptions{})
	if legacy, err := p.LegacyKubeletServing(); err != nil || legacy {
		t.Fatalf("a new cluster is migrating (%v, %v)", legacy, err)
	}
	certs, err := ParseCertsPEM(mustRead(t, p.KubeletTrustBundle))
	if err != nil || len(certs) != 1 || !certs[0].Equal(readCert(t, p.KubeletServingCACert)) {
		t.Fatalf("a new cluster's kubelet trust bundle must hold the kubelet-serving CA alone (%d certs, %v)", len(certs), err)
	}
}

func TestUpgradeTrustsOldKubeletCertsUntilMigrated(t *testing.T) {
	dir := t.TempDir()
	p := mustEnsure(t, dir, ServerOptions{})
	// A data dir from before the kubelet-serving CA existed.
	for _, f := range []string{p.KubeletServingCACert, p.KubeletServingCAKey, p.KubeletTrustBundle} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	p = mustEnsure(t, dir, ServerOptions{})
	if legacy, err := p.LegacyKubeletServing(); err != nil || !legacy {
		t.Fatalf("an upgraded cluster is not migrating (%v, %v)", legacy, err)
	}
	bundle := mustRead(t, p.KubeletTrustBundle)
	certs, err := ParseCertsPEM(bundle)
	if err != nil || len(certs) != 2 || !certs[1].Equal(readCert(t, p.ServerCACert)) {
		t.Fatalf("while migrating the bundle must hold the kubelet-serving and server CAs (%d certs, %v)", len(certs), err)
	}
	// A restart keeps the migration going.
	p = mustEnsure(t, dir, ServerOptions{})
	if got := mustRead(t, p.KubeletTrustBundle); string(got) != string(bundle) {
		t.Fatal("a restart changed the bundle while migrating")
	}
	if err := p.FinishKubeletServingMigration(); err != nil {
		t.Fatal(err)
	}
	certs, err = ParseCertsPEM(mustRead(t, p.KubeletTrustBundle))
	if err != nil || len(certs) != 1 || !certs[0].Equal(readCert(t, p.KubeletServingCACert)) {
		t.Fatalf("after the migration the bundle must hold the kubelet-serving CA alone (%d certs, %v)", len(certs), err)
	}
	p = mustEnsure(t, dir, ServerOptions{})
	if legacy, _ := p.LegacyKubeletServing(); legacy {
		t.Fatal("a restart after the migration started it again")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyEncodingRoundTrip(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := parsePrivateKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(parsed.Public()) {
		t.Error("EncodeKey round trip changed the key")
	}
	if _, err := ParseCertsPEM(b); err == nil {
		t.Error("ParseCertsPEM accepted a key without certificates")
	}
}
