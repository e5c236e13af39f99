package containerd

// Repository rewrites (registries.yaml's mirrors.*.rewrite, as in k3s).
//
// containerd 2.4's resolver asks a mirror for the very repository the
// image names: hosts.toml has no rewrite (k3s patches it into its own
// containerd fork), and neither the CRI image service nor the transfer
// service takes a hook to change the repository or the HTTP client. So
// skiff puts a small reverse proxy, in its own process, in front of each
// mirror endpoint that has rewrite rules: hosts.toml sends containerd to
// http://127.0.0.1:PORT/v2 instead of the endpoint, and the proxy forwards
// each request to the endpoint with the repository in its path rewritten
// (/v2/rancher/coredns/manifests/v1 -> /v2/mirror/rancher-images/coredns/
// manifests/v1). Everything else stays containerd's: the token dance (the
// endpoint's credentials are registered for the proxy's host), retries,
// redirects to blob storage, digests verification. The proxy speaks TLS
// to the endpoint with the registries file's settings for it.
//
// The proxies live as long as skiff's containerd component; while skiff is
// stopped a pull through them fails over to the next endpoint, as for any
// unreachable mirror.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// rewriteRule is one "regexp: replacement" of a mirror's rewrite map.
type rewriteRule struct {
	re          *regexp.Regexp
	replacement string
}

// rewriteRules compiles a mirror's rewrites in the order of their patterns
// (a YAML map has none, and the first rule that matches applies).
func rewriteRules(rewrites map[string]string) []rewriteRule {
	var rules []rewriteRule
	for _, pattern := range sortedKeys(rewrites) {
		// normalize has checked every pattern compiles.
		rules = append(rules, rewriteRule{re: regexp.MustCompile(pattern), replacement: rewrites[pattern]})
	}
	return rules
}

// rewriteRepository applies the first rule that matches repo, as k3s does.
func rewriteRepository(rules []rewriteRule, repo string) string {
	for _, r := range rules {
		if r.re.MatchString(repo) {
			return r.re.ReplaceAllString(repo, r.replacement)
		}
	}
	return repo
}

// distributionPath splits a registry API path, /v2/REPO/KIND/REST, into the
// repository and what follows it. The repository may have any number of
// components, so the split is at the last API keyword.
var distributionPath = regexp.MustCompile(`^/v2/(.+)/(manifests/[^/]+|blobs/[^/]+|tags/list|referrers/[^/]+)$`)

// rewritePath rewrites the repository in an API path; other paths (the
// /v2/ ping) pass unchanged.
func rewritePath(rules []rewriteRule, p string) string {
	m := distributionPath.FindStringSubmatch(p)
	if m == nil {
		return p
	}
	return "/v2/" + rewriteRepository(rules, m[1]) + "/" + m[2]
}

// rewriteProxy forwards one mirror endpoint's requests with rewritten
// repositories.
type rewriteProxy struct {
	// endpoint is the mirror's API root: scheme, host and path ending in
	// /v2, as containerd derives it from the endpoint URL.
	endpoint *url.URL
	rules    []rewriteRule
	proxy    *httputil.ReverseProxy
}

func newRewriteProxy(endpoint string, rules []rewriteRule, tlsSettings *RegistryTLS) (*rewriteProxy, error) {
	u, err := apiRoot(endpoint)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// containerd gets redirects (to blob storage) as they are and follows
	// them itself, as it would without the proxy.
	tr.TLSClientConfig, err = tlsConfig(tlsSettings)
	if err != nil {
		return nil, err
	}
	p := &rewriteProxy{endpoint: u, rules: rules}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			out := r.Out
			out.URL.Scheme = u.Scheme
			out.URL.Host = u.Host
			out.Host = u.Host
			out.URL.Path = strings.TrimSuffix(u.Path, "/v2") + rewritePath(p.rules, r.In.URL.Path)
			out.URL.RawPath = ""
			logrus.Debugf("registry rewrite: %s -> %s", r.In.URL.Path, out.URL.Path)
		},
		Transport: tr,
		// A relative Location is relative to the endpoint, which
		// containerd does not know it talks to.
		ModifyResponse: func(resp *http.Response) error {
			if loc := resp.Header.Get("Location"); loc != "" {
				if l, err := url.Parse(loc); err == nil && !l.IsAbs() {
					resp.Header.Set("Location", resp.Request.URL.ResolveReference(l).String())
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			logrus.Warnf("registry mirror %s: %v", u.Host, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return p, nil
}

func (p *rewriteProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A mirror serves pulls only, as hosts.toml says.
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "a registry mirror serves pulls only", http.StatusMethodNotAllowed)
		return
	}
	p.proxy.ServeHTTP(w, r)
}

// apiRoot is an endpoint's API root, derived as containerd's hosts.toml
// derives it: the URL's path (cleaned) with /v2 appended unless it ends so.
func apiRoot(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("mirror endpoint %q: %w", endpoint, err)
	}
	p := "/v2"
	if u.Path != "" && u.Path != "/" {
		p = path.Clean(u.Path)
		if !strings.HasSuffix(p, "/v2") {
			p += "/v2"
		}
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: p}, nil
}

// tlsConfig is the client TLS of one endpoint from the registries file.
func tlsConfig(t *RegistryTLS) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return c, nil
	}
	c.InsecureSkipVerify = t.InsecureSkipVerify
	if t.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load cert_file and key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// rewriteProxies are the running proxies of one registries file.
type rewriteProxies struct {
	servers []*http.Server
}

// proxyKey names one endpoint of one mirror in Registries.proxied.
func proxyKey(mirror, endpoint string) string { return mirror + "\x00" + endpoint }

// startRewriteProxies starts a proxy on a loopback port for each endpoint
// of each mirror that has rewrite rules, and records their URLs in
// regs.proxied for the hosts files and the credentials. Each endpoint has
// its own port because containerd looks credentials up by host.
func startRewriteProxies(regs *Registries) (*rewriteProxies, error) {
	ps := &rewriteProxies{}
	for _, name := range sortedKeys(regs.Mirrors) {
		m := regs.Mirrors[name]
		if len(m.Rewrites) == 0 {
			continue
		}
		rules := rewriteRules(m.Rewrites)
		for _, ep := range m.Endpoints {
			var settings *RegistryTLS
			if u, err := url.Parse(ep); err == nil {
				settings = regs.Configs[u.Host].TLS
			}
			p, err := newRewriteProxy(ep, rules, settings)
			if err != nil {
				ps.Close()
				return nil, fmt.Errorf("registries file: mirrors.%q endpoint %s: %w", name, ep, err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				ps.Close()
				return nil, fmt.Errorf("listen for the rewrite proxy of mirror %s: %w", ep, err)
			}
			srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					logrus.Warnf("registry rewrite proxy for %s stopped: %v", ep, err)
				}
			}()
			ps.servers = append(ps.servers, srv)
			if regs.proxied == nil {
				regs.proxied = map[string]string{}
			}
			regs.proxied[proxyKey(name, ep)] = "http://" + ln.Addr().String()
			logrus.Infof("registry mirror %s of %s: repositories rewritten through %s", ep, name, ln.Addr())
		}
	}
	return ps, nil
}

// Close stops the proxies.
func (ps *rewriteProxies) Close() {
	if ps == nil {
		return
	}
	for _, s := range ps.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.Shutdown(ctx)
		cancel()
	}
}
