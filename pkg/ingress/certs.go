package ingress

import (
	"crypto/tls"
	"strings"
)

// certificateSet picks the serving certificate for a TLS ClientHello by its
// SNI name. Names listed in an Ingress's spec.tls hosts are preferred over
// the names a certificate itself carries, so an Ingress can say which of two
// overlapping certificates serves a host.
type certificateSet struct {
	byIngressHost map[string]*tls.Certificate
	byCertName    map[string]*tls.Certificate
}

func newCertificateSet() *certificateSet {
	return &certificateSet{
		byIngressHost: map[string]*tls.Certificate{},
		byCertName:    map[string]*tls.Certificate{},
	}
}

// add indexes cert under the Ingress's TLS hosts and the certificate's own
// DNS names. The first certificate registered for a name keeps it.
func (s *certificateSet) add(cert *tls.Certificate, ingressHosts []string) {
	for _, host := range ingressHosts {
		addFirst(s.byIngressHost, strings.ToLower(host), cert)
	}
	if cert.Leaf == nil {
		return
	}
	names := cert.Leaf.DNSNames
	if len(names) == 0 && cert.Leaf.Subject.CommonName != "" {
		names = []string{cert.Leaf.Subject.CommonName}
	}
	for _, name := range names {
		addFirst(s.byCertName, strings.ToLower(name), cert)
	}
}

func addFirst(m map[string]*tls.Certificate, name string, cert *tls.Certificate) {
	if name == "" {
		return
	}
	if _, taken := m[name]; !taken {
		m[name] = cert
	}
}

// lookup returns the certificate for serverName, trying the exact name
// before the wildcard one label up, or nil when none is known.
func (s *certificateSet) lookup(serverName string) *tls.Certificate {
	if s == nil || serverName == "" {
		return nil
	}
	name := normalizeHost(serverName)
	candidates := []string{name}
	if dot := strings.IndexByte(name, '.'); dot > 0 {
		candidates = append(candidates, "*"+name[dot:])
	}
	for _, candidate := range candidates {
		if cert := s.byIngressHost[candidate]; cert != nil {
			return cert
		}
		if cert := s.byCertName[candidate]; cert != nil {
			return cert
		}
	}
	return nil
}
