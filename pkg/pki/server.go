package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// RenewBefore is how close to expiry a leaf is re-issued at start: four
	// months of restarts to pick up new leaves before the old ones expire.
	RenewBefore = 120 * 24 * time.Hour
	// backdate tolerates clocks of other nodes being slightly behind ours.
	backdate = 5 * time.Minute

	defaultClusterDomain = "cluster.local"
	servingCommonName    = "kube-apiserver"
)

// ServerOptions describes what the server certificates must cover.
type ServerOptions struct {
	// DNSNames and IPs are SANs of the apiserver/supervisor serving certificate.
	// EnsureServer always adds localhost, the in-cluster kubernetes service names,
	// 127.0.0.1 and ::1.
	DNSNames []string
	IPs      []net.IP
	// ClusterDomain defaults to cluster.local when empty.
	ClusterDomain string
}

// ServerPKI is the set of files in one directory (mode 0700); all paths are absolute.
type ServerPKI struct {
	Dir                       string
	ServerCACert, ServerCAKey string
	// The kubelet-serving CA signs only kubelet serving certificates, so a
	// node's certificate can never pass for the apiserver: pods and kubelets
	// trust the server CA, which this CA is not part of.
	KubeletServingCACert, KubeletServingCAKey string
	// KubeletTrustBundle is what the apiserver verifies kubelets with: the
	// kubelet-serving CA and, while nodes that joined before it existed
	// still serve certificates from the server CA, that CA too.
	KubeletTrustBundle string
	// LegacyKubeletServingMarker exists while that migration is unfinished.
	LegacyKubeletServingMarker                  string
	ClientCACert, ClientCAKey                   string
	RequestHeaderCACert, RequestHeaderCAKey     string
	ServiceAccountKey                           string
	ServingCert, ServingKey                     string
	AdminCert, AdminKey                         string
	ControllerManagerCert, ControllerManagerKey string
	SchedulerCert, SchedulerKey                 string
	KubeletClientCert, KubeletClientKey         string
	AuthProxyCert, AuthProxyKey                 string
	// The addon-serving CA signs the serving certificates of the API
	// servers that addons run behind APIServices (metrics-server); only
	// those APIServices trust it, so an addon's key can pass for nothing
	// else.
	AddonServingCACert, AddonServingCAKey string
	MetricsServerCert, MetricsServerKey   string
}

// MetricsServerName is the host name the apiserver's aggregator checks
// metrics-server's certificate for: <service>.<namespace>.svc.
const MetricsServerName = "metrics-server.kube-system.svc"

func newServerPKI(dir string) *ServerPKI {
	f := func(name string) string { return filepath.Join(dir, name) }
	return &ServerPKI{
		Dir:                        dir,
		ServerCACert:               f("server-ca.crt"),
		ServerCAKey:                f("server-ca.key"),
		KubeletServingCACert:       f("kubelet-serving-ca.crt"),
		KubeletServingCAKey:        f("kubelet-serving-ca.key"),
		KubeletTrustBundle:         f("kubelet-trust-bundle.crt"),
		LegacyKubeletServingMarker: f("kubelet-serving-legacy"),
		ClientCACert:               f("client-ca.crt"),
		ClientCAKey:                f("client-ca.key"),
		RequestHeaderCACert:        f("request-header-ca.crt"),
		RequestHeaderCAKey:         f("request-header-ca.key"),
		ServiceAccountKey:          f("service.key"),
		ServingCert:                f("serving-kube-apiserver.crt"),
		ServingKey:                 f("serving-kube-apiserver.key"),
		AdminCert:                  f("client-admin.crt"),
		AdminKey:                   f("client-admin.key"),
		ControllerManagerCert:      f("client-controller-manager.crt"),
		ControllerManagerKey:       f("client-controller-manager.key"),
		SchedulerCert:              f("client-scheduler.crt"),
		SchedulerKey:               f("client-scheduler.key"),
		KubeletClientCert:          f("client-kube-apiserver.crt"),
		KubeletClientKey:           f("client-kube-apiserver.key"),
		AuthProxyCert:              f("client-auth-proxy.crt"),
		AuthProxyKey:               f("client-auth-proxy.key"),
		AddonServingCACert:         f("addon-serving-ca.crt"),
		AddonServingCAKey:          f("addon-serving-ca.key"),
		MetricsServerCert:          f("serving-metrics-server.crt"),
		MetricsServerKey:           f("serving-metrics-server.key"),
	}
}

// certAuthority is a loaded CA: certificate, its PEM and the signing key.
type certAuthority struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

// leafSpec is what a leaf certificate must look like; matches decides whether an
// existing certificate still fulfils it.
type leafSpec struct {
	commonName string
	orgs       []string
	dnsNames   []string
	ips        []net.IP
	usages     []x509.ExtKeyUsage
}

// The extended key usages skiff's leaves carry; a leaf must have every one of
// its spec's.
var (
	serverAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
)

// EnsureServer creates whatever is missing in dir and reuses what exists. CAs and keys
// are never replaced; leaf certificates are re-issued when missing, expiring within 120
// days, not signed by the current CA, or (for the serving certificate) when the SAN set
// changed.
func EnsureServer(dir string, opts ServerOptions) (*ServerPKI, error) {
	abs, err := ensurePKIDir(dir)
	if err != nil {
		return nil, err
	}
	p := newServerPKI(abs)

	// A server CA without a kubelet-serving CA is a cluster made before the
	// latter existed: its nodes serve certificates from the server CA until
	// their next start.
	upgrading, err := migratingToKubeletServingCA(p)
	if err != nil {
		return nil, err
	}
	serverCA, err := ensureCA(p.ServerCACert, p.ServerCAKey, "skiff-server-ca")
	if err != nil {
		return nil, err
	}
	kubeletServingCA, err := ensureCA(p.KubeletServingCACert, p.KubeletServingCAKey, "skiff-kubelet-serving-ca")
	if err != nil {
		return nil, err
	}
	if upgrading {
		if err := fileutil.WriteAtomic(p.LegacyKubeletServingMarker, []byte("nodes may still serve certificates signed by server-ca.crt\n"), certMode); err != nil {
			return nil, err
		}
	}
	legacy, err := p.LegacyKubeletServing()
	if err != nil {
		return nil, err
	}
	if err := p.writeKubeletTrustBundle(kubeletServingCA, serverCA, legacy); err != nil {
		return nil, err
	}
	clientCA, err := ensureCA(p.ClientCACert, p.ClientCAKey, "skiff-client-ca")
	if err != nil {
		return nil, err
	}
	requestHeaderCA, err := ensureCA(p.RequestHeaderCACert, p.RequestHeaderCAKey, "skiff-request-header-ca")
	if err != nil {
		return nil, err
	}
	addonServingCA, err := ensureCA(p.AddonServingCACert, p.AddonServingCAKey, "skiff-addon-serving-ca")
	if err != nil {
		return nil, err
	}
	if err := ensureServiceAccountKey(p.ServiceAccountKey); err != nil {
		return nil, err
	}

	dnsNames, ips := servingSANs(opts)
	leaves := []struct {
		cert, key string
		ca        *certAuthority
		spec      leafSpec
	}{
		{p.ServingCert, p.ServingKey, serverCA, leafSpec{commonName: servingCommonName, dnsNames: dnsNames, ips: ips, usages: serverAuth}},
		{p.AdminCert, p.AdminKey, clientCA, leafSpec{commonName: "system:admin", orgs: []string{"system:masters"}, usages: clientAuth}},
		{p.ControllerManagerCert, p.ControllerManagerKey, clientCA, leafSpec{commonName: "system:kube-controller-manager", usages: clientAuth}},
		{p.SchedulerCert, p.SchedulerKey, clientCA, leafSpec{commonName: "system:kube-scheduler", usages: clientAuth}},
		{p.KubeletClientCert, p.KubeletClientKey, clientCA, leafSpec{commonName: "system:kube-apiserver", orgs: []string{"system:masters"}, usages: clientAuth}},
		{p.AuthProxyCert, p.AuthProxyKey, requestHeaderCA, leafSpec{commonName: "system:auth-proxy", usages: clientAuth}},
		{p.MetricsServerCert, p.MetricsServerKey, addonServingCA, leafSpec{commonName: "metrics-server", dnsNames: []string{MetricsServerName}, usages: serverAuth}},
	}
	for _, l := range leaves {
		if err := ensureLeaf(l.cert, l.key, l.ca, l.spec); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ensurePKIDir creates dir with mode 0700 and returns its absolute path.
func ensurePKIDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve pki dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return "", fmt.Errorf("create pki dir %s: %w", abs, err)
	}
	if err := ensureMode(abs, dirMode); err != nil {
		return "", err
	}
	return abs, nil
}

func migratingToKubeletServingCA(p *ServerPKI) (bool, error) {
	serverCA, err := readOptional(p.ServerCACert)
	if err != nil {
		return false, err
	}
	kubeletCA, err := readOptional(p.KubeletServingCACert)
	if err != nil {
		return false, err
	}
	return serverCA != nil && kubeletCA == nil, nil
}

// writeKubeletTrustBundle writes the CAs the apiserver accepts kubelet
// serving certificates from: the kubelet-serving CA, and the server CA too
// while legacy (nodes may still serve certificates it signed).
func (p *ServerPKI) writeKubeletTrustBundle(kubeletServingCA, serverCA *certAuthority, legacy bool) error {
	bundle := slices.Clone(kubeletServingCA.certPEM)
	if legacy {
		bundle = append(bundle, serverCA.certPEM...)
	}
	_, err := fileutil.WriteIfChanged(p.KubeletTrustBundle, bundle, certMode)
	return err
}

// LegacyKubeletServing reports whether nodes may still serve certificates
// signed by the server CA.
func (p *ServerPKI) LegacyKubeletServing() (bool, error) {
	_, err := os.Stat(p.LegacyKubeletServingMarker)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", p.LegacyKubeletServingMarker, err)
	}
	return true, nil
}

// FinishKubeletServingMigration stops trusting the server CA for kubelets,
// once every node serves a certificate from the kubelet-serving CA.
func (p *ServerPKI) FinishKubeletServingMigration() error {
	kubeletCA, err := loadCA(p.KubeletServingCACert, p.KubeletServingCAKey)
	if err != nil {
		return err
	}
	// The bundle first, then the marker: whoever sees the marker gone sees
	// the new bundle, and a crash in between leaves the marker, so the next
	// start trusts the server CA again and the migration finishes anew.
	if err := p.writeKubeletTrustBundle(kubeletCA, nil, false); err != nil {
		return err
	}
	if err := os.Remove(p.LegacyKubeletServingMarker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p.LegacyKubeletServingMarker, err)
	}
	return nil
}

// ServerCABundle returns the PEM bytes of server-ca.crt.
func (p *ServerPKI) ServerCABundle() ([]byte, error) {
	b, err := os.ReadFile(p.ServerCACert)
	if err != nil {
		return nil, fmt.Errorf("read server CA bundle: %w", err)
	}
	return b, nil
}

// SignClientCert signs pub with the client CA for client authentication. It returns
// the leaf PEM followed by the client CA PEM.
func (p *ServerPKI) SignClientCert(commonName string, orgs []string, pub crypto.PublicKey) ([]byte, error) {
	if commonName == "" {
		return nil, errors.New("sign client certificate: common name is empty")
	}
	ca, err := loadCA(p.ClientCACert, p.ClientCAKey)
	if err != nil {
		return nil, fmt.Errorf("sign client certificate for %q: %w", commonName, err)
	}
	return signChain(ca, leafSpec{commonName: commonName, orgs: orgs, usages: clientAuth}, pub)
}

// SignKubeletServingCert signs pub with the kubelet-serving CA for a
// kubelet's serving TLS; the caller decides which names a node may have. It
// returns the leaf PEM followed by the kubelet-serving CA PEM.
func (p *ServerPKI) SignKubeletServingCert(commonName string, dnsNames []string, ips []net.IP, pub crypto.PublicKey) ([]byte, error) {
	if commonName == "" {
		return nil, errors.New("sign kubelet serving certificate: common name is empty")
	}
	ca, err := loadCA(p.KubeletServingCACert, p.KubeletServingCAKey)
	if err != nil {
		return nil, fmt.Errorf("sign kubelet serving certificate for %q: %w", commonName, err)
	}
	return signChain(ca, leafSpec{commonName: commonName, dnsNames: dnsNames, ips: ips, usages: serverAuth}, pub)
}

func signChain(ca *certAuthority, spec leafSpec, pub crypto.PublicKey) ([]byte, error) {
	if pub == nil {
		return nil, fmt.Errorf("sign certificate for %q: public key is nil", spec.commonName)
	}
	der, err := issueLeaf(ca, spec, pub)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, ca.certPEM...), nil
}

// servingSANs returns the wanted, normalized SAN set of the apiserver serving cert.
func servingSANs(opts ServerOptions) ([]string, []net.IP) {
	domain := strings.Trim(opts.ClusterDomain, ".")
	if domain == "" {
		domain = defaultClusterDomain
	}
	dns := []string{
		"localhost",
		"kubernetes",
		"kubernetes.default",
		"kubernetes.default.svc",
		"kubernetes.default.svc." + domain,
	}
	dns = append(dns, opts.DNSNames...)
	ips := append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, opts.IPs...)
	return normalizeDNS(dns), normalizeIPs(ips)
}

// normalizeDNS lowercases, sorts and dedups so that order or case differences in the
// configuration do not cause needless re-issuing.
func normalizeDNS(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// normalizeIPs sorts and dedups by 16-byte form so IPv4 in either representation compares equal.
func normalizeIPs(ips []net.IP) []net.IP {
	out := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		if ip16 := ip.To16(); ip16 != nil {
			out = append(out, ip16)
		}
	}
	slices.SortFunc(out, func(a, b net.IP) int { return bytes.Compare(a, b) })
	return slices.CompactFunc(out, func(a, b net.IP) bool { return a.Equal(b) })
}

func ensureCA(certPath, keyPath, commonName string) (*certAuthority, error) {
	certPEM, err := readOptional(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readOptional(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certPEM != nil && keyPEM != nil:
		if err := ensureMode(keyPath, keyMode); err != nil {
			return nil, err
		}
		if err := ensureMode(certPath, certMode); err != nil {
			return nil, err
		}
		return parseCA(certPEM, keyPEM, certPath)
	case certPEM != nil || keyPEM != nil:
		// Generating the missing half would silently rotate the CA and break every
		// node that trusts it; a human has to decide.
		return nil, fmt.Errorf("CA %s: only one of %s and %s exists", commonName, certPath, keyPath)
	}

	key, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", commonName, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", commonName, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The timestamp makes every generation of a CA distinguishable by name.
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s@%d", commonName, now.Unix())},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", commonName, err)
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", commonName, err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a crash after it leaves a lone key, which is reported above instead
	// of yielding a certificate nobody can sign with.
	if err := fileutil.WriteAtomic(keyPath, keyPEM, keyMode); err != nil {
		return nil, err
	}
	if err := fileutil.WriteAtomic(certPath, certPEM, certMode); err != nil {
		return nil, err
	}
	return parseCA(certPEM, keyPEM, certPath)
}

func loadCA(certPath, keyPath string) (*certAuthority, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	return parseCA(certPEM, keyPEM, certPath)
}

func parseCA(certPEM, keyPEM []byte, certPath string) (*certAuthority, error) {
	certs, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key for %s: %w", certPath, err)
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("CA certificate %s does not match its key", certPath)
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("certificate %s is not a CA", certPath)
	}
	return &certAuthority{cert: certs[0], certPEM: certPEM, key: key}, nil
}

func ensureServiceAccountKey(path string) error {
	existing, err := readOptional(path)
	if err != nil {
		return err
	}
	if existing != nil {
		if _, err := parsePrivateKeyPEM(existing); err != nil {
			return fmt.Errorf("service account key %s: %w", path, err)
		}
		return ensureMode(path, keyMode)
	}
	// RSA because not every consumer of service-account tokens handles ES256.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service account key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return fileutil.WriteAtomic(path, data, keyMode)
}

// ensureLeaf keeps an existing leaf key and re-issues the certificate only when it no
// longer fulfils spec, so restarts leave files byte-identical.
func ensureLeaf(certPath, keyPath string, ca *certAuthority, spec leafSpec) error {
	keyPEM, err := readOptional(keyPath)
	if err != nil {
		return err
	}
	var key crypto.Signer
	if keyPEM != nil {
		if key, err = parsePrivateKeyPEM(keyPEM); err != nil {
			return fmt.Errorf("key %s: %w", keyPath, err)
		}
		if err := ensureMode(keyPath, keyMode); err != nil {
			return err
		}
	} else {
		ecKey, err := GenerateKey()
		if err != nil {
			return fmt.Errorf("create key %s: %w", keyPath, err)
		}
		if keyPEM, err = EncodeKey(ecKey); err != nil {
			return fmt.Errorf("create key %s: %w", keyPath, err)
		}
		if err := fileutil.WriteAtomic(keyPath, keyPEM, keyMode); err != nil {
			return err
		}
		key = ecKey
	}

	certPEM, err := readOptional(certPath)
	if err != nil {
		return err
	}
	if certPEM != nil {
		// An unparsable certificate is just re-issued: unlike keys, it carries no state.
		if certs, err := ParseCertsPEM(certPEM); err == nil && leafIsCurrent(certs[0], ca, key, spec) {
			return ensureMode(certPath, certMode)
		}
	}
	der, err := issueLeaf(ca, spec, key.Public())
	if err != nil {
		return fmt.Errorf("issue %s: %w", certPath, err)
	}
	return fileutil.WriteAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), certMode)
}

func leafIsCurrent(cert *x509.Certificate, ca *certAuthority, key crypto.Signer, spec leafSpec) bool {
	if !bytes.Equal(cert.RawIssuer, ca.cert.RawSubject) || cert.CheckSignatureFrom(ca.cert) != nil {
		return false
	}
	if time.Until(cert.NotAfter) < RenewBefore {
		return false
	}
	// A crash between writing a new key and its certificate leaves them mismatched.
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return false
	}
	if cert.Subject.CommonName != spec.commonName || !slices.Equal(sortedCopy(cert.Subject.Organization), sortedCopy(spec.orgs)) {
		return false
	}
	for _, u := range spec.usages {
		if !slices.Contains(cert.ExtKeyUsage, u) {
			return false
		}
	}
	if !slices.Equal(normalizeDNS(cert.DNSNames), normalizeDNS(spec.dnsNames)) {
		return false
	}
	return slices.EqualFunc(normalizeIPs(cert.IPAddresses), normalizeIPs(spec.ips), net.IP.Equal)
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func issueLeaf(ca *certAuthority, spec leafSpec, pub crypto.PublicKey) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(leafValidity)
	// A leaf outliving its CA would fail verification anyway; cap it for clarity.
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	// Key encipherment only makes sense for RSA key exchange, not for ECDSA keys.
	if _, ok := pub.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.commonName, Organization: spec.orgs},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           spec.usages,
		BasicConstraintsValid: true,
		DNSNames:              spec.dnsNames,
		IPAddresses:           spec.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", spec.commonName, err)
	}
	return der, nil
}

// randomSerial returns a positive 128-bit serial, as RFC 5280 requires serials to be unique per CA.
func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
