package supervisor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/pkg/pki"
)

// KubeletCAMigration finishes an upgrade to the kubelet-serving CA. Nodes
// that joined before it existed serve certificates from the server CA until
// their next start, so the apiserver trusts both meanwhile; once every node
// serves one from the kubelet-serving CA, the server CA is dropped from the
// kubelet trust bundle.
type KubeletCAMigration struct {
	PKI   *pki.ServerPKI
	Nodes *Cache
	// Every is how often the nodes are checked.
	Every time.Duration
}

func (m *KubeletCAMigration) Name() string { return "kubelet CA migration" }

func (m *KubeletCAMigration) Start(ctx context.Context) (<-chan error, error) {
	legacy, err := m.PKI.LegacyKubeletServing()
	if err != nil {
		return nil, err
	}
	if !legacy {
		// A cluster made with the kubelet-serving CA has nothing to
		// migrate: the component is done.
		return nil, nil
	}
	done := make(chan error)
	pem, err := os.ReadFile(m.PKI.KubeletServingCACert)
	if err != nil {
		return nil, fmt.Errorf("read kubelet-serving CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("kubelet-serving CA %s holds no certificate", m.PKI.KubeletServingCACert)
	}
	go func() {
		defer close(done)
		logrus.Infof("nodes that joined before the kubelet-serving CA existed get a certificate from it at their next start; until then the apiserver also trusts the server CA for kubelets")
		var reported []string
		for {
			pending, err := m.pendingNodes(ctx, roots)
			switch {
			case err != nil:
				logrus.Debugf("kubelet CA migration: %v", err)
			case len(pending) == 0:
				if err := m.PKI.FinishKubeletServingMigration(); err != nil {
					logrus.Warnf("kubelet CA migration: %v", err)
					break
				}
				logrus.Info("every node serves a certificate from the kubelet-serving CA: the server CA is no longer trusted for kubelets")
				<-ctx.Done()
				return
			case !slices.Equal(pending, reported):
				logrus.Infof("waiting for these nodes to restart skiff and get a kubelet certificate from the kubelet-serving CA: %s", strings.Join(pending, ", "))
				reported = pending
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(m.Every):
			}
		}
	}()
	return done, nil
}

// pendingNodes names the nodes whose kubelet does not yet serve a
// certificate from the kubelet-serving CA, as seen in a TLS handshake.
func (m *KubeletCAMigration) pendingNodes(ctx context.Context, roots *x509.CertPool) ([]string, error) {
	nodes, err := m.Nodes.Nodes()
	if err != nil {
		return nil, err
	}
	var pending []string
	for _, n := range nodes {
		if err := servesKubeletCACert(ctx, n, roots); err != nil {
			logrus.Debugf("kubelet CA migration: node %s: %v", n.Name, err)
			pending = append(pending, n.Name)
		}
	}
	slices.Sort(pending)
	return pending, nil
}

func servesKubeletCACert(ctx context.Context, n *corev1.Node, roots *x509.CertPool) error {
	port := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	var addr string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
			break
		}
	}
	if addr == "" || port == 0 {
		return errors.New("no InternalIP or kubelet port reported yet")
	}
	dialer := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		// Only the issuer is checked here, below; nothing is sent.
		Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec
	}
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	if len(state.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = state.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}
