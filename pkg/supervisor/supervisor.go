// Package supervisor serves skiff's own endpoints on the cluster's HTTPS
// port, in front of the apiserver: the CA bundle for token pinning, a
// liveness ping, and the token-authenticated join endpoints agents use to
// obtain their credentials and the cluster configuration.
package supervisor

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/pki"
)

// JoinPrefix is the path under which token-authenticated endpoints live.
const JoinPrefix = "/v1-skiff/"

// NodeNameHeader carries the name of the node asking for credentials.
const NodeNameHeader = "Skiff-Node-Name"

// maxCSRBytes bounds request bodies on unauthenticated-until-checked paths.
const maxCSRBytes = 64 << 10

// ClusterConfig is what an agent learns from the server when it joins.
type ClusterConfig struct {
	ClusterCIDR   string `json:"clusterCIDR"`
	ServiceCIDR   string `json:"serviceCIDR"`
	ClusterDNS    string `json:"clusterDNS"`
	ClusterDomain string `json:"clusterDomain"`
	// FlannelBackend is the pod network backend every node must use.
	FlannelBackend string `json:"flannelBackend"`
	// SystemDefaultRegistry is the registry the system images are named
	// under; "" for skiff.local.
	SystemDefaultRegistry string `json:"systemDefaultRegistry,omitempty"`
	// DisableNetworkPolicy: nodes do not enforce NetworkPolicies.
	DisableNetworkPolicy bool `json:"disableNetworkPolicy,omitempty"`
}

// Supervisor holds what the endpoints need to answer.
type Supervisor struct {
	PKI     *pki.ServerPKI
	Token   pki.Token
	Cluster ClusterConfig
	// ServiceCIDRs are the cluster's Service ranges, which no kubelet
	// serving certificate may name an address of.
	ServiceCIDRs []netip.Prefix
	// Passwords, when set, ties each node name to the first host that
	// joined with it.
	Passwords *NodePasswords
	// AgentToken, when set, is a second secret that joins agents only
	// (username "node").
	AgentToken *pki.Token
	// JoinTokens, when set, admits agents with tokens made by
	// `skiff token create`.
	JoinTokens *JoinTokens
	// Nodes, when set, lets the serving-certificate policy refuse an
	// address another node already reports.
	Nodes *Cache
	// ServerBootstrap, when set, returns the body that answers a server
	// joining the cluster: the shared files, sealed with the cluster
	// token, and how the cluster stores its data.
	ServerBootstrap func(context.Context) ([]byte, error)

	guardOnce sync.Once
	guard     *guard
}

// Wrap returns a handler that answers skiff's endpoints and hands every
// other request to the apiserver's own handler chain.
func (s *Supervisor) Wrap(apiserver http.Handler) http.Handler {
	s.guardOnce.Do(func() { s.guard = newGuard(time.Now) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cacerts", s.caCerts)
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "pong")
	})
	mux.Handle("GET "+JoinPrefix+"config", s.authenticated(http.HandlerFunc(s.config)))
	mux.Handle("GET "+JoinPrefix+"client-ca.crt", s.authenticated(http.HandlerFunc(s.clientCA)))
	mux.Handle("POST "+JoinPrefix+pki.NodeKubeletClient, s.authenticated(http.HandlerFunc(s.clientKubelet)))
	mux.Handle("POST "+JoinPrefix+pki.NodeKubeletServing, s.authenticated(http.HandlerFunc(s.servingKubelet)))
	mux.Handle("POST "+JoinPrefix+pki.NodeKubeProxy, s.authenticated(http.HandlerFunc(s.clientKubeProxy)))
	mux.Handle("GET "+JoinPrefix+ServerBootstrapPath, s.authenticated(http.HandlerFunc(s.serverBootstrap)))
	mux.Handle(JoinPrefix, s.authenticated(http.NotFoundHandler()))
	mux.Handle("/", apiserver)
	return mux
}

func (s *Supervisor) caCerts(w http.ResponseWriter, _ *http.Request) {
	bundle, err := s.PKI.ServerCABundle()
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("read server CA: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(bundle)
}

// authenticated admits requests whose basic-auth credentials are a join
// token. A bad token costs no apiserver request and no log line of its own,
// and a source that keeps sending them is throttled.
func (s *Supervisor) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src := sourceOf(r)
		if ok, wait := s.guard.allow(src); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, wait).Round(time.Second)/time.Second)))
			httpError(w, http.StatusTooManyRequests, errors.New("too many requests with a bad join token from this address; wait and try again with this cluster's token"))
			return
		}
		user, pass, ok := r.BasicAuth()
		valid := false
		if ok {
			var err error
			if valid, err = s.tokenMatches(user, pass); err != nil {
				httpError(w, http.StatusServiceUnavailable, err)
				return
			}
		}
		if !valid {
			s.guard.refuse(src, r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Basic realm="skiff"`)
			httpError(w, http.StatusUnauthorized, errors.New("the join token is not valid for this cluster"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Supervisor) tokenMatches(user, pass string) (bool, error) {
	if credentialsMatch(s.Token, user, pass) {
		return true, nil
	}
	// Every join endpoint serves agents, so agent-only tokens pass here;
	// the endpoint for joining servers checks the server token alone.
	if s.AgentToken != nil && credentialsMatch(*s.AgentToken, user, pass) {
		return true, nil
	}
	if s.JoinTokens == nil {
		return false, nil
	}
	return s.JoinTokens.Valid(user, pass)
}

func credentialsMatch(t pki.Token, user, pass string) bool {
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(t.Username)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(t.Password)) == 1
	return userOK && passOK
}

func (s *Supervisor) config(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Cluster)
}

func (s *Supervisor) clientCA(w http.ResponseWriter, _ *http.Request) {
	ca, err := os.ReadFile(s.PKI.ClientCACert)
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("read client CA: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(ca)
}

func (s *Supervisor) clientKubelet(w http.ResponseWriter, r *http.Request) {
	node, csr, ok := nodeCSR(w, r)
	if !ok || !s.nodeOwned(w, r, node) {
		return
	}
	s.respondCert(w, func() ([]byte, error) {
		return s.PKI.SignClientCert("system:node:"+node, []string{"system:nodes"}, csr.PublicKey)
	})
}

func (s *Supervisor) clientKubeProxy(w http.ResponseWriter, r *http.Request) {
	_, csr, ok := nodeCSR(w, r)
	if !ok {
		return
	}
	s.respondCert(w, func() ([]byte, error) {
		return s.PKI.SignClientCert("system:kube-proxy", nil, csr.PublicKey)
	})
}

// servingKubelet signs the kubelet's serving certificate with the
// kubelet-serving CA, for the node's own name and addresses only.
func (s *Supervisor) servingKubelet(w http.ResponseWriter, r *http.Request) {
	node, csr, ok := nodeCSR(w, r)
	if !ok || !s.nodeOwned(w, r, node) {
		return
	}
	dns, ips, err := kubeletServingNames(node, csr.DNSNames, csr.IPAddresses, s.ServiceCIDRs, func(ip net.IP) (string, error) {
		if s.Nodes == nil {
			return "", nil
		}
		return s.Nodes.nodeWithAddress(node, ip)
	}, fromLoopback(r))
	switch {
	case errors.Is(err, errCacheNotReady):
		httpError(w, http.StatusServiceUnavailable, err)
		return
	case err != nil:
		logrus.Warnf("%v (node %s from %s)", err, node, sourceOf(r))
		httpError(w, http.StatusForbidden, err)
		return
	}
	s.respondCert(w, func() ([]byte, error) {
		return s.PKI.SignKubeletServingCert(node, dns, ips, csr.PublicKey)
	})
}

// fromLoopback reports whether r reached the server over loopback.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// nodeOwned checks the node password before a node's own credentials are
// issued; it answers the request itself when the check fails.
func (s *Supervisor) nodeOwned(w http.ResponseWriter, r *http.Request, node string) bool {
	if s.Passwords == nil {
		return true
	}
	err := s.Passwords.Verify(r.Context(), node, r.Header.Get(NodePasswordHeader))
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrNodeNameTaken):
		logrus.Warnf("refused credentials for node %s from %s: another host joined with that name and its Node exists", node, r.RemoteAddr)
		httpError(w, http.StatusForbidden, fmt.Errorf("node name %q belongs to another host whose Node still exists; if this host replaces it (reinstalled, or its data dir lost), delete the old Node with `kubectl delete node %s` and start this agent again, otherwise give this host another --node-name", node, node))
	case errors.Is(err, ErrNodeNameClaimed):
		logrus.Warnf("refused credentials for node %s from %s: another host joined with that name and has not registered its Node yet", node, r.RemoteAddr)
		httpError(w, http.StatusForbidden, fmt.Errorf("node name %q was taken by another host that has not registered its Node yet; give this host another --node-name, or, if that host is gone for good, delete its claim with `kubectl -n kube-system delete secret %s` and start this agent again", node, NodePasswordSecretName(node)))
	case errors.Is(err, ErrNoNodePassword):
		httpError(w, http.StatusBadRequest, err)
	default:
		logrus.Warnf("node password check for %s: %v", node, err)
		httpError(w, http.StatusServiceUnavailable, fmt.Errorf("check node password: %w", err))
	}
	return false
}

func (s *Supervisor) respondCert(w http.ResponseWriter, sign func() ([]byte, error)) {
	cert, err := sign()
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("sign certificate: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(cert)
}

// nodeCSR reads the node name header and the PEM certificate request in the
// body, and checks the request's self-signature so the node proves it holds
// the private key.
func nodeCSR(w http.ResponseWriter, r *http.Request) (string, *x509.CertificateRequest, bool) {
	node := strings.TrimSpace(r.Header.Get(NodeNameHeader))
	if err := validNodeName(node); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return "", nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCSRBytes))
	if err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("read request: %w", err))
		return "", nil, false
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		httpError(w, http.StatusBadRequest, errors.New("the body must be a PEM certificate request"))
		return "", nil, false
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("invalid certificate request: %w", err))
		return "", nil, false
	}
	return node, csr, true
}

// validNodeName accepts what Kubernetes accepts as a node name: a DNS
// subdomain (lowercase alphanumerics, '-' and '.', at most 253 characters).
func validNodeName(name string) error {
	if name == "" {
		return fmt.Errorf("missing %s header", NodeNameHeader)
	}
	if len(name) > 253 {
		return fmt.Errorf("invalid node name %q", name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("invalid node name %q: it must be a lowercase DNS name", name)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("invalid node name %q: it must be a lowercase DNS name", name)
			}
		}
	}
	return nil
}

func httpError(w http.ResponseWriter, code int, err error) {
	http.Error(w, err.Error(), code)
}
