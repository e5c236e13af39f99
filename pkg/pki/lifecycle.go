package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// A node's certificates: the supervisor endpoint that signs each (under
// /v1-skiff/) and its files in the agent's credential dir (NAME.crt and
// NAME.key) share these names.
const (
	NodeKubeletClient  = "client-kubelet"
	NodeKubeletServing = "serving-kubelet"
	NodeKubeProxy      = "client-kube-proxy"
)

// ManagedCert is one certificate skiff keeps on a node, named by the
// service that uses it, as `skiff certificate` shows and rotates them.
type ManagedCert struct {
	Service string
	Cert    string
	Key     string
	// CA certificates are checked but never rotated: every node trusts
	// them by hash.
	CA bool
	// Node certificates are signed by the server at each agent start;
	// rotating one means the next start also makes a new key.
	Node bool
}

// ManagedCerts lists the certificates under a server's TLS dir and an
// agent's credential dir that exist on this host, in a stable order.
func ManagedCerts(serverTLSDir, agentCredDir string) ([]ManagedCert, error) {
	p := newServerPKI(serverTLSDir)
	all := []ManagedCert{
		{Service: "server-ca", Cert: p.ServerCACert, Key: p.ServerCAKey, CA: true},
		{Service: "kubelet-serving-ca", Cert: p.KubeletServingCACert, Key: p.KubeletServingCAKey, CA: true},
		{Service: "client-ca", Cert: p.ClientCACert, Key: p.ClientCAKey, CA: true},
		{Service: "request-header-ca", Cert: p.RequestHeaderCACert, Key: p.RequestHeaderCAKey, CA: true},
		{Service: "addon-serving-ca", Cert: p.AddonServingCACert, Key: p.AddonServingCAKey, CA: true},
		{Service: "kube-apiserver", Cert: p.ServingCert, Key: p.ServingKey},
		{Service: "kube-apiserver", Cert: p.KubeletClientCert, Key: p.KubeletClientKey},
		{Service: "admin", Cert: p.AdminCert, Key: p.AdminKey},
		{Service: "controller-manager", Cert: p.ControllerManagerCert, Key: p.ControllerManagerKey},
		{Service: "scheduler", Cert: p.SchedulerCert, Key: p.SchedulerKey},
		{Service: "auth-proxy", Cert: p.AuthProxyCert, Key: p.AuthProxyKey},
		{Service: "metrics-server", Cert: p.MetricsServerCert, Key: p.MetricsServerKey},
	}
	node := func(service, name string) ManagedCert {
		return ManagedCert{Service: service, Cert: filepath.Join(agentCredDir, name+".crt"), Key: filepath.Join(agentCredDir, name+".key"), Node: true}
	}
	all = append(all, node("kubelet", NodeKubeletClient), node("kubelet", NodeKubeletServing), node("kube-proxy", NodeKubeProxy))
	var out []ManagedCert
	for _, c := range all {
		_, err := os.Stat(c.Cert)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", c.Cert, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Services are the names `skiff certificate rotate --service` takes.
func Services(certs []ManagedCert) []string {
	var out []string
	for _, c := range certs {
		if !c.CA && !slices.Contains(out, c.Service) {
			out = append(out, c.Service)
		}
	}
	return out
}

// Expiry reads a certificate file's first certificate's end of validity.
func Expiry(path string) (time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("read %s: %w", path, err)
	}
	certs, err := ParseCertsPEM(b)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return certs[0].NotAfter, nil
}

// Rotate re-issues c now. A server leaf is signed again by its CA, for its
// key and with its names, so a running component can reload it; a node
// certificate and its key are removed, and the agent's next start gets new
// ones from the server.
func Rotate(c ManagedCert, serverTLSDir string) error {
	switch {
	case c.CA:
		return fmt.Errorf("%s is a CA: every node trusts it by hash, so it is not rotated", c.Cert)
	case c.Node:
		for _, f := range []string{c.Cert, c.Key} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", f, err)
			}
		}
		return nil
	}
	certPEM, err := os.ReadFile(c.Cert)
	if err != nil {
		return fmt.Errorf("read %s: %w", c.Cert, err)
	}
	certs, err := ParseCertsPEM(certPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Cert, err)
	}
	old := certs[0]
	keyPEM, err := os.ReadFile(c.Key)
	if err != nil {
		return fmt.Errorf("read %s: %w", c.Key, err)
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("key %s: %w", c.Key, err)
	}
	ca, err := issuerOf(old, serverTLSDir)
	if err != nil {
		return err
	}
	spec := leafSpec{commonName: old.Subject.CommonName, orgs: old.Subject.Organization, dnsNames: old.DNSNames, ips: old.IPAddresses, usages: old.ExtKeyUsage}
	der, err := issueLeaf(ca, spec, key.Public())
	if err != nil {
		return fmt.Errorf("re-issue %s: %w", c.Cert, err)
	}
	return fileutil.WriteAtomic(c.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), certMode)
}

// issuerOf finds which of the server's CAs signed cert.
func issuerOf(cert *x509.Certificate, dir string) (*certAuthority, error) {
	p := newServerPKI(dir)
	for _, pair := range [][2]string{{p.ServerCACert, p.ServerCAKey}, {p.ClientCACert, p.ClientCAKey}, {p.RequestHeaderCACert, p.RequestHeaderCAKey}, {p.KubeletServingCACert, p.KubeletServingCAKey}, {p.AddonServingCACert, p.AddonServingCAKey}} {
		ca, err := loadCA(pair[0], pair[1])
		if err != nil {
			continue
		}
		if cert.CheckSignatureFrom(ca.cert) == nil {
			return ca, nil
		}
	}
	return nil, fmt.Errorf("no CA in %s signed the certificate for %q; restart the server to re-issue it", dir, cert.Subject.CommonName)
}
