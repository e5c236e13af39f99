package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
)

// EtcdOptions describes what the embedded etcd member's certificates must
// cover: the names and addresses other members and servers reach it by.
type EtcdOptions struct {
	// DNSNames and IPs are SANs of the serving and peer certificates;
	// EnsureEtcd always adds localhost, 127.0.0.1 and ::1.
	DNSNames []string
	IPs      []net.IP
}

// EtcdPKI is the set of files of the embedded etcd member, in their own
// directory (mode 0700) under the server's TLS dir. The two CAs are the
// cluster's: a joining server receives them before it calls EnsureEtcd.
type EtcdPKI struct {
	Dir string
	// The server CA signs the member's client-port serving certificate and
	// every etcd client certificate, so whoever holds a client certificate
	// can reach any member, and nothing signed by the Kubernetes CAs can.
	ServerCACert, ServerCAKey string
	// The peer CA is for member-to-member TLS only: a client certificate
	// cannot pass for a member.
	PeerCACert, PeerCAKey string
	ServerCert, ServerKey string
	PeerCert, PeerKey     string
	// The client certificate is what the apiserver and skiff use to talk to
	// etcd.
	ClientCert, ClientKey string
}

const etcdClientCommonName = "skiff-etcd-client"

// EtcdFiles names the etcd files under tlsDir without touching the disk.
// Paths are relative when tlsDir is; EnsureEtcd returns absolute ones.
func EtcdFiles(tlsDir string) *EtcdPKI {
	dir := filepath.Join(tlsDir, "etcd")
	f := func(name string) string { return filepath.Join(dir, name) }
	return &EtcdPKI{
		Dir:          dir,
		ServerCACert: f("server-ca.crt"),
		ServerCAKey:  f("server-ca.key"),
		PeerCACert:   f("peer-ca.crt"),
		PeerCAKey:    f("peer-ca.key"),
		ServerCert:   f("server.crt"),
		ServerKey:    f("server.key"),
		PeerCert:     f("peer.crt"),
		PeerKey:      f("peer.key"),
		ClientCert:   f("client.crt"),
		ClientKey:    f("client.key"),
	}
}

// EnsureEtcd creates whatever is missing of the etcd files under tlsDir and
// reuses what exists, by EnsureServer's rules: CAs and keys are never
// replaced; leaves are re-issued when missing, expiring, not signed by the
// current CA, or when their SANs changed.
func EnsureEtcd(tlsDir string, opts EtcdOptions) (*EtcdPKI, error) {
	abs, err := filepath.Abs(tlsDir)
	if err != nil {
		return nil, fmt.Errorf("resolve pki dir %s: %w", tlsDir, err)
	}
	p := EtcdFiles(abs)
	if _, err := ensurePKIDir(p.Dir); err != nil {
		return nil, err
	}
	serverCA, err := ensureCA(p.ServerCACert, p.ServerCAKey, "skiff-etcd-server-ca")
	if err != nil {
		return nil, err
	}
	peerCA, err := ensureCA(p.PeerCACert, p.PeerCAKey, "skiff-etcd-peer-ca")
	if err != nil {
		return nil, err
	}
	dnsNames := normalizeDNS(append([]string{"localhost"}, opts.DNSNames...))
	ips := normalizeIPs(append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, opts.IPs...))
	// etcd presents its serving and peer certificates as client certificates
	// too: a member dials the others with its peer certificate, and its gRPC
	// gateway dials its own client port with the serving one.
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	leaves := []struct {
		cert, key string
		ca        *certAuthority
		spec      leafSpec
	}{
		{p.ServerCert, p.ServerKey, serverCA, leafSpec{commonName: "skiff-etcd-server", dnsNames: dnsNames, ips: ips, usages: both}},
		{p.PeerCert, p.PeerKey, peerCA, leafSpec{commonName: "skiff-etcd-peer", dnsNames: dnsNames, ips: ips, usages: both}},
		{p.ClientCert, p.ClientKey, serverCA, leafSpec{commonName: etcdClientCommonName, usages: clientAuth}},
	}
	for _, l := range leaves {
		if err := ensureLeaf(l.cert, l.key, l.ca, l.spec); err != nil {
			return nil, err
		}
	}
	return p, nil
}
