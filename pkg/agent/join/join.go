// Package join obtains a node's credentials from a skiff server: it pins the
// server's CA to the join token's hash, then asks the supervisor, with the
// token, for the kubelet and kube-proxy certificates and the cluster
// configuration.
package join

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/fileutil"
	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/supervisor"
)

// Credentials are the files a node's components authenticate with, all
// obtained from the server's supervisor with the join token.
type Credentials struct {
	ServerCA            string // trusts the apiserver
	ClientCA            string // the kubelet trusts clients signed by it
	KubeletKubeconfig   string
	KubeProxyKubeconfig string
	ServingCert         string
	ServingKey          string
	Cluster             supervisor.ClusterConfig
}

// Options say which server to join, with which token, as which node, and
// where to keep the files.
type Options struct {
	ServerURL string
	Token     string
	NodeName  string
	NodeIPs   []net.IP
	Dir       string
	// PasswordFile keeps the node password, created at the first join.
	PasswordFile string
	// APIServerURL is written into the kubeconfigs; default ServerURL.
	APIServerURL string
}

// Join obtains the node's credentials, retrying while the server is
// unreachable or starting; a refusal (wrong token, CA mismatch) ends it at
// once with an error that names the cause.
func Join(ctx context.Context, o Options) (*Credentials, error) {
	j, err := newJoiner(o.ServerURL, o.Token, o.NodeName, o.NodeIPs, o.Dir)
	if err != nil {
		return nil, err
	}
	if o.PasswordFile == "" {
		o.PasswordFile = filepath.Join(o.Dir, "node-password")
	}
	if j.password, err = nodePassword(o.PasswordFile); err != nil {
		return nil, err
	}
	j.apiURL = o.APIServerURL
	if j.apiURL == "" {
		j.apiURL = j.serverURL
	}
	return j.join(ctx)
}

// joiner talks to the supervisor on behalf of one node.
type joiner struct {
	serverURL string
	token     pki.Token
	nodeName  string
	nodeIPs   []net.IP
	dir       string // where keys, certificates and kubeconfigs are written
	password  string
	apiURL    string
	client    *http.Client
}

func newJoiner(serverURL, token, nodeName string, nodeIPs []net.IP, dir string) (*joiner, error) {
	t, err := pki.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("invalid join token: %w; copy it again from the server (skiff token)", err)
	}
	if t.Username == "" {
		t.Username = pki.ServerTokenUser
	}
	return &joiner{
		serverURL: strings.TrimRight(serverURL, "/"),
		token:     t,
		nodeName:  nodeName,
		nodeIPs:   nodeIPs,
		dir:       dir,
	}, nil
}

// join fetches and pins the server CA, then obtains the node's certificates
// and the cluster configuration. It retries while the server is starting.
func (j *joiner) join(ctx context.Context) (*Credentials, error) {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", j.dir, err)
	}
	var creds *Credentials
	err := retry(ctx, func() error {
		var err error
		creds, err = j.joinOnce(ctx)
		return err
	})
	return creds, err
}

// permanentError ends the retries: the server answered, and said no.
type permanentError struct{ error }

func retry(ctx context.Context, fn func() error) error {
	delay := 500 * time.Millisecond
	var cause error
	for {
		err := fn()
		var perm permanentError
		if err == nil || errors.As(err, &perm) {
			return err
		}
		// An attempt cut short by the deadline only says "deadline exceeded";
		// the attempt before it says why the server could not be reached.
		if ctx.Err() == nil || cause == nil {
			cause = err
		}
		logrus.Infof("waiting for the server: %v", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), cause)
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

func (j *joiner) joinOnce(ctx context.Context) (*Credentials, error) {
	ca, err := FetchCA(ctx, j.serverURL, j.token)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, permanentError{fmt.Errorf("the server at %s sent no usable CA certificate", j.serverURL)}
	}
	j.client = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}

	c := &Credentials{
		ServerCA:            filepath.Join(j.dir, "server-ca.crt"),
		ClientCA:            filepath.Join(j.dir, "client-ca.crt"),
		KubeletKubeconfig:   filepath.Join(j.dir, "kubelet.kubeconfig"),
		KubeProxyKubeconfig: filepath.Join(j.dir, "kube-proxy.kubeconfig"),
		ServingCert:         filepath.Join(j.dir, pki.NodeKubeletServing+".crt"),
		ServingKey:          filepath.Join(j.dir, pki.NodeKubeletServing+".key"),
	}
	if err := fileutil.WriteAtomic(c.ServerCA, ca, 0o644); err != nil {
		return nil, err
	}
	cfgJSON, err := j.get(ctx, "config")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(cfgJSON, &c.Cluster); err != nil {
		return nil, fmt.Errorf("read cluster configuration from the server: %w", err)
	}
	clientCA, err := j.get(ctx, "client-ca.crt")
	if err != nil {
		return nil, err
	}
	if err := fileutil.WriteAtomic(c.ClientCA, clientCA, 0o644); err != nil {
		return nil, err
	}

	kubeletCert, kubeletKey, err := j.certificate(ctx, pki.NodeKubeletClient, "system:node:"+j.nodeName, nil, nil)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteKubeconfig(c.KubeletKubeconfig, pki.Kubeconfig{Server: j.apiURL, CACert: c.ServerCA, CertFile: kubeletCert, KeyFile: kubeletKey}, 0o600); err != nil {
		return nil, err
	}
	proxyCert, proxyKey, err := j.certificate(ctx, pki.NodeKubeProxy, "system:kube-proxy", nil, nil)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteKubeconfig(c.KubeProxyKubeconfig, pki.Kubeconfig{Server: j.apiURL, CACert: c.ServerCA, CertFile: proxyCert, KeyFile: proxyKey}, 0o600); err != nil {
		return nil, err
	}
	// The server signs a kubelet serving certificate for the node's own
	// name and addresses only: the apiserver reaches the kubelet by them.
	if _, _, err := j.certificate(ctx, pki.NodeKubeletServing, j.nodeName, []string{j.nodeName, "localhost"}, j.nodeIPs); err != nil {
		return nil, err
	}
	return c, nil
}

// FetchCA reads the server CA bundle from serverURL's /cacerts without
// trusting anything yet: the token's hash is what makes the answer
// trustworthy, so a mismatch fails before any secret is sent. Servers
// joining a cluster pin its CA the same way.
func FetchCA(ctx context.Context, serverURL string, token pki.Token) ([]byte, error) {
	insecure := &http.Client{
		Timeout: 15 * time.Second,
		// The CA is verified against the token below, not by TLS.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, serverURL+"/cacerts", nil)
	if err != nil {
		return nil, permanentError{fmt.Errorf("invalid server URL %q: %w", serverURL, err)}
	}
	resp, err := insecure.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach %s: %w", serverURL, err)
	}
	defer resp.Body.Close()
	ca, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read CA from %s: %w", serverURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch CA from %s: %s", serverURL, resp.Status)
	}
	if token.CAHash == "" {
		logrus.Warn("the join token has no CA hash (bare secret): the server's identity is not verified; use the full K10 token from `skiff token` to pin it")
	} else if !token.VerifyCA(ca) {
		return nil, permanentError{fmt.Errorf("the CA of the server at %s does not match the join token's hash: the token belongs to another cluster or the server was re-created; get the current token with `skiff token` on the server", serverURL)}
	}
	return ca, nil
}

func (j *joiner) get(ctx context.Context, path string) ([]byte, error) {
	return j.do(ctx, http.MethodGet, path, nil)
}

func (j *joiner) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, j.serverURL+supervisor.JoinPrefix+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(j.token.Username, j.token.Password)
	req.Header.Set(supervisor.NodeNameHeader, j.nodeName)
	req.Header.Set(supervisor.NodePasswordHeader, j.password)
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, permanentError{fmt.Errorf("the server at %s refused the join token: it is not this cluster's token; get it with `skiff token` on the server", j.serverURL)}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		// Throttled, or the server is still starting: worth another try.
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	case resp.StatusCode == http.StatusForbidden:
		return nil, permanentError{fmt.Errorf("the server refused this node: %s", strings.TrimSpace(string(data)))}
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return nil, permanentError{fmt.Errorf("the server refused %s: %s", path, strings.TrimSpace(string(data)))}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	}
	return data, nil
}

// certificate keeps one private key per credential across restarts and asks
// the supervisor to sign a fresh certificate for it.
func (j *joiner) certificate(ctx context.Context, kind, commonName string, dnsNames []string, ips []net.IP) (certPath, keyPath string, err error) {
	certPath = filepath.Join(j.dir, kind+".crt")
	keyPath = filepath.Join(j.dir, kind+".key")
	key, err := loadOrCreateKey(keyPath)
	if err != nil {
		return "", "", err
	}
	csr, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: commonName},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, key)
	if err != nil {
		return "", "", fmt.Errorf("create %s certificate request: %w", kind, err)
	}
	cert, err := j.do(ctx, http.MethodPost, kind, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	if err != nil {
		return "", "", err
	}
	if _, err := pki.ParseCertsPEM(cert); err != nil {
		return "", "", fmt.Errorf("the server sent an invalid %s certificate: %w", kind, err)
	}
	if err := fileutil.WriteAtomic(certPath, cert, 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func loadOrCreateKey(path string) (any, error) {
	if data, err := os.ReadFile(path); err == nil {
		if block, _ := pem.Decode(data); block != nil {
			if key, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
				return key, nil
			}
		}
		logrus.Warnf("replacing unreadable key %s", path)
	}
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	encoded, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := fileutil.WriteAtomic(path, encoded, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// nodePassword reads the node's password, creating it at the first join.
// It proves to the server that this is the host that first used the name.
func nodePassword(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil {
		if p := strings.TrimSpace(string(data)); len(p) >= 16 {
			return p, nil
		}
		return "", fmt.Errorf("node password file %s is damaged; restore it from a backup, or delete it and the secret kube-system/<node>.node-password.skiff on the server", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node password: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	p := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := fileutil.WriteAtomic(path, []byte(p+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store node password: %w", err)
	}
	return p, nil
}
