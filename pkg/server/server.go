// Package server assembles `skiff server`: it prepares the data dir, PKI,
// token and kubeconfigs, then runs the datastore and the control plane as
// components until asked to stop.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/pkg/agent"
	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/controlplane"
	"github.com/skiff-io/skiff/pkg/controlplane/flags"
	"github.com/skiff-io/skiff/pkg/datastore"
	"github.com/skiff-io/skiff/pkg/deploy"
	"github.com/skiff-io/skiff/pkg/dns"
	"github.com/skiff-io/skiff/pkg/kubeclient"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/secretsencrypt"
	"github.com/skiff-io/skiff/pkg/supervisor"
)

// Run runs a skiff server until ctx is cancelled.
func Run(ctx context.Context, cfg *config.Server) error {
	agent.SetupLogging(cfg.Debug)

	paths := layout.New(cfg.DataDir)
	l := paths.Server
	if err := prepareDataDir(l); err != nil {
		return err
	}
	if err := checkPortFree(cfg.BindAddress, cfg.HTTPSPort); err != nil {
		return err
	}
	nodeName, err := agent.NodeName(cfg.NodeName)
	if err != nil {
		return err
	}
	nodeIPs := agent.NodeIPs(cfg.NodeIPs())
	serviceIP, err := cfg.KubernetesServiceIP()
	if err != nil {
		return err
	}

	sans := serverSANs(cfg, nodeName, nodeIPs, serviceIP)
	certs, err := pki.EnsureServer(l.TLSDir, sans)
	if err != nil {
		return fmt.Errorf("prepare certificates in %s: %w", l.TLSDir, err)
	}
	caBundle, err := certs.ServerCABundle()
	if err != nil {
		return err
	}
	token, created, err := pki.EnsureClusterToken(l.TokenFile, cfg.Token, caBundle, certs.ServerCACert)
	if err != nil {
		return err
	}
	if created {
		logrus.Infof("generated a new cluster token in %s", l.TokenFile)
	}

	agentToken, err := pki.EnsureAgentToken(l.AgentTokenFile, cfg.AgentToken, token)
	if err != nil {
		return err
	}

	// Once a server has an encryption config it keeps it, flag or not:
	// the Secrets already encrypted must stay readable.
	encryptionConfig, warn, err := secretsencrypt.Files{Dir: l.CredDir}.Ensure(cfg.SecretsEncryption)
	if err != nil {
		return err
	}
	if warn != "" {
		logrus.Warn(warn)
	} else if encryptionConfig != "" {
		logrus.Infof("Secrets are encrypted at rest with the keys in %s", encryptionConfig)
	}

	local := "https://" + net.JoinHostPort(loopbackFor(cfg.BindAddress), strconv.Itoa(cfg.HTTPSPort))
	kubeconfigs, err := writeKubeconfigs(cfg, l, certs, local)
	if err != nil {
		return err
	}

	ds := &datastore.Datastore{Endpoint: cfg.DatastoreEndpoint, DBDir: l.DBDir, StateDB: l.StateDB, Socket: l.KineSocket}
	// One admin client, built on first use, serves every join-endpoint piece.
	adminClient := kubeclient.Lazy(kubeconfigs.admin)
	joinCache := &supervisor.Cache{Client: adminClient}
	sup := &supervisor.Supervisor{
		PKI:   certs,
		Token: token,
		Cluster: supervisor.ClusterConfig{
			ClusterCIDR:    cfg.ClusterCIDR,
			ServiceCIDR:    cfg.ServiceCIDR,
			ClusterDNS:     cfg.ClusterDNS,
			ClusterDomain:  cfg.ClusterDomain,
			FlannelBackend: cfg.FlannelBackend,
		},
		Passwords:  &supervisor.NodePasswords{Client: adminClient},
		AgentToken: agentToken,
		JoinTokens: &supervisor.JoinTokens{Client: adminClient, Cache: joinCache},
		Nodes:      joinCache,
	}
	advertise := cfg.AdvertiseAddress
	if advertise == "" {
		advertise = nodeIPs[0].String()
	}
	api := &controlplane.APIServer{
		Wrap: sup.Wrap,
		Args: func() []string {
			return append(flags.APIServer(cfg, certs, advertise, ds.ETCD.Endpoints, encryptionConfig), config.PassthroughFlags(cfg.ExtraAPIServerArgs)...)
		},
	}
	cm := &controlplane.ControllerManager{
		Args: append(flags.ControllerManager(cfg, certs, kubeconfigs.controllerManager), config.PassthroughFlags(cfg.ExtraControllerManagerArgs)...),
	}
	sched := &controlplane.Scheduler{
		Args: append(flags.Scheduler(kubeconfigs.scheduler), config.PassthroughFlags(cfg.ExtraSchedulerArgs)...),
	}

	ready := func() {
		logrus.Infof("cluster ready: kubeconfig at %s, token at %s", cfg.KubeconfigPath, l.TokenFile)
	}
	bundled, err := bundledAddons(cfg, paths, certs)
	if err != nil {
		return err
	}
	comps := []component.Component{ds}
	var node *agent.Agent
	if !cfg.DisableAgent {
		nodeCfg := &config.Agent{
			Node:      cfg.Node,
			DataDir:   cfg.DataDir,
			ServerURL: local,
			Token:     token.String(),
			NodeName:  nodeName,
			NodeIPs:   nodeIPs,
			Debug:     cfg.Debug,
			// Through the load balancer even here: stopping it cuts the
			// in-process kubelet's watches, which upstream offers no other
			// way to end, so the apiserver can shut down promptly.
			LoadBalancerAddress: config.DefaultLoadBalancerAddress,
		}
		// The runtime (helpers unpacked, containerd, the system images) gets
		// ready while the control plane starts; the node's kubelet waits for it.
		runtime := agent.NewRuntime(nodeCfg, cfg.FlannelBackend)
		comps = append(comps, runtime)
		node = &agent.Agent{Config: nodeCfg, Runtime: runtime}
	}
	deployer := &deploy.Controller{
		Dir:        l.ManifestsDir,
		Kubeconfig: kubeconfigs.admin,
		Namespace:  metav1.NamespaceSystem,
		Bundled:    bundled,
		Disabled:   cfg.Disable,
	}
	renewal := &certRenewal{every: 12 * time.Hour, renew: func() error {
		if _, err := pki.EnsureServer(l.TLSDir, sans); err != nil {
			return err
		}
		if _, err := writeKubeconfigs(cfg, l, certs, local); err != nil {
			return err
		}
		// metrics-server's certificate travels in its manifest.
		bundled, err := bundledAddons(cfg, paths, certs)
		if err != nil {
			return err
		}
		return deployer.UpdateBundled(bundled)
	}}
	comps = append(comps, api, joinCache, renewal, &supervisor.KubeletCAMigration{PKI: certs, Nodes: joinCache, Every: 30 * time.Second},
		&clusterRoles{kubeconfig: kubeconfigs.admin}, cm, sched,
		deployer,
		&dns.NodeHosts{Kubeconfig: kubeconfigs.admin},
	)
	if node != nil {
		comps = append(comps, node)
	}
	if err := component.Run(ctx, ready, comps...); err != nil {
		return err
	}
	logrus.Info("skiff server stopped")
	return nil
}

// prepareDataDir creates the server's dirs and proves they are writable
// before anything else is started.
func prepareDataDir(l layout.Server) error {
	for _, dir := range []string{l.Dir, l.TLSDir, l.CredDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return dataDirError(l.Dir, err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return dataDirError(l.Dir, err)
		}
	}
	probe := filepath.Join(l.Dir, ".write-test")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return dataDirError(l.Dir, err)
	}
	return os.Remove(probe)
}

func dataDirError(dir string, err error) error {
	return fmt.Errorf("data dir %s is not writable (%v); run as root or pass a --data-dir you own", dir, unwrapPath(err))
}

// unwrapPath drops the path from an *os.PathError, which the caller names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkPortFree fails early, with the fix in the message, when the HTTPS
// port is taken, rather than after the datastore and PKI work.
func checkPortFree(bind string, port int) error {
	addr := net.JoinHostPort(bind, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("port %d on %s is already in use (is another skiff server running?); stop that process or choose another --https-listen-port", port, bind)
		}
		return fmt.Errorf("cannot listen on %s: %w; check --bind-address and --https-listen-port", addr, err)
	}
	return ln.Close()
}

func serverSANs(cfg *config.Server, nodeName string, nodeIPs []net.IP, serviceIP net.IP) pki.ServerOptions {
	opts := pki.ServerOptions{ClusterDomain: cfg.ClusterDomain}
	addName := func(s string) {
		if s == "" {
			return
		}
		if ip := net.ParseIP(s); ip != nil {
			opts.IPs = append(opts.IPs, ip)
			return
		}
		opts.DNSNames = append(opts.DNSNames, s)
	}
	if host, err := os.Hostname(); err == nil {
		addName(strings.ToLower(host))
	}
	addName(nodeName)
	opts.IPs = append(opts.IPs, nodeIPs...)
	opts.IPs = append(opts.IPs, serviceIP)
	addName(cfg.AdvertiseAddress)
	if ip := net.ParseIP(cfg.BindAddress); ip != nil && !ip.IsUnspecified() {
		opts.IPs = append(opts.IPs, ip)
	}
	for _, san := range cfg.TLSSANs {
		addName(san)
	}
	return opts
}

// loopbackFor picks the address local clients use to reach the server.
func loopbackFor(bind string) string {
	ip := net.ParseIP(bind)
	if ip == nil || ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			return "::1"
		}
		return "127.0.0.1"
	}
	return ip.String()
}
