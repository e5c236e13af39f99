// Package server assembles `skiff server`: it prepares the data dir, PKI,
// token and kubeconfigs, then runs the datastore and the control plane as
// components until asked to stop.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/manifests"
	"github.com/skiff-io/skiff/pkg/agent"
	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/controlplane"
	"github.com/skiff-io/skiff/pkg/controlplane/flags"
	"github.com/skiff-io/skiff/pkg/deploy"
	"github.com/skiff-io/skiff/pkg/dns"
	"github.com/skiff-io/skiff/pkg/helmchart"
	"github.com/skiff-io/skiff/pkg/kubeclient"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/leader"
	"github.com/skiff-io/skiff/pkg/nodeaddress"
	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/secretsencrypt"
	"github.com/skiff-io/skiff/pkg/servicelb"
	"github.com/skiff-io/skiff/pkg/supervisor"
)

// Run runs a skiff server until ctx is cancelled.
func Run(ctx context.Context, cfg *config.CompletedServer) error {
	agent.SetupLogging(cfg.Debug)
	agent.TuneGC(ctx)

	paths := cfg.Paths
	l := paths.Server
	if err := prepareDataDir(l); err != nil {
		return err
	}
	if err := checkPortFree(cfg.BindAddress, cfg.HTTPSPort); err != nil {
		return err
	}

	if cfg.ClusterReset {
		return resetCluster(ctx, cfg)
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	// Until the graph takes the datastore over, a failure stops it here.
	graphRuns := false
	defer func() {
		if !graphRuns {
			st.stop()
		}
	}()
	givenToken := cfg.Token
	var secret string
	if cfg.Datastore.Shared() {
		var generated bool
		if secret, generated, err = st.settleMaterial(ctx, cfg); err != nil {
			return err
		}
		if generated {
			givenToken = secret
			logrus.Infof("generated a new cluster token in %s", l.TokenFile)
		}
	}

	sans := serverSANs(cfg)
	certs, err := pki.EnsureServer(l.TLSDir, sans)
	if err != nil {
		return fmt.Errorf("prepare certificates in %s: %w", l.TLSDir, err)
	}
	caBundle, err := certs.ServerCABundle()
	if err != nil {
		return err
	}
	token, created, err := pki.EnsureClusterToken(l.TokenFile, givenToken, caBundle, certs.ServerCACert)
	if err != nil {
		return err
	}
	if created {
		logrus.Infof("generated a new cluster token in %s", l.TokenFile)
	}
	if secret == "" {
		secret = token.Password
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

	local := "https://" + netip.AddrPortFrom(loopbackFor(cfg.BindAddress), uint16(cfg.HTTPSPort)).String()
	kubeconfigs, err := writeKubeconfigs(cfg, l, certs, local)
	if err != nil {
		return err
	}

	// One admin client, built on first use, serves every join-endpoint piece.
	adminClient := kubeclient.Lazy(kubeconfigs.admin)
	joinCache := &supervisor.Cache{Client: adminClient}
	sup := &supervisor.Supervisor{
		PKI:   certs,
		Token: token,
		Cluster: supervisor.ClusterConfig{
			ClusterCIDR:           cfg.Cluster.ClusterCIDRList(),
			ServiceCIDR:           cfg.Cluster.ServiceCIDRList(),
			ClusterDNS:            cfg.Cluster.ClusterDNS.String(),
			ClusterDomain:         cfg.Cluster.ClusterDomain,
			FlannelBackend:        cfg.FlannelBackend,
			SystemDefaultRegistry: cfg.SystemDefaultRegistry,
			DisableNetworkPolicy:  cfg.DisableNetworkPolicy,
		},
		ServiceCIDRs:    cfg.Cluster.ServiceCIDRs,
		Passwords:       &supervisor.NodePasswords{Client: adminClient},
		AgentToken:      agentToken,
		JoinTokens:      &supervisor.JoinTokens{Client: adminClient, Cache: joinCache},
		Nodes:           joinCache,
		ServerBootstrap: st.bootstrapResponse(cfg, secret),
	}
	api := &controlplane.APIServer{
		Wrap: sup.Wrap,
		Args: func() []string {
			return append(flags.APIServer(cfg, certs, st.backend, encryptionConfig), cfg.APIServerFlags...)
		},
	}
	cm := &controlplane.ControllerManager{
		Args: append(flags.ControllerManager(cfg, certs, kubeconfigs.controllerManager), cfg.ControllerManagerFlags...),
	}
	if cfg.Datastore.Shared() {
		cm.LeaderElsewhere = controllerManagerLeadsElsewhere(adminClient)
	}
	sched := &controlplane.Scheduler{
		Args: append(flags.Scheduler(kubeconfigs.scheduler), cfg.SchedulerFlags...),
	}

	ready := func() {
		logrus.Infof("cluster ready: kubeconfig at %s, token at %s", cfg.KubeconfigPath, l.TokenFile)
		agent.ReleaseStartPages(ctx)
	}
	bundled, err := bundledAddons(cfg, certs)
	if err != nil {
		return err
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
		bundled, err := bundledAddons(cfg, certs)
		if err != nil {
			return err
		}
		return deployer.UpdateBundled(bundled)
	}}
	// Each starts once what it requires is ready; the rest start side by
	// side.
	after := func(c component.Component, required ...component.Component) component.Component {
		names := make([]string, len(required))
		for i, r := range required {
			names[i] = r.Name()
		}
		return component.Requiring(c, names...)
	}
	// Controllers that act on the cluster run on one server at a time
	// wherever there can be several.
	elected := func(c component.Component) component.Component { return c }
	if cfg.Datastore.Shared() {
		identity := cfg.NodeName + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
		elected = func(c component.Component) component.Component {
			return leader.Elected(c, adminClient, identity)
		}
	}
	roles := clusterRoles(kubeconfigs.admin, !cfg.DisableNetworkPolicy)
	ds := st.component
	comps := []component.Component{
		ds,
		after(api, ds),
		after(joinCache, api),
		after(renewal, api),
		after(&supervisor.KubeletCAMigration{PKI: certs, Nodes: joinCache, Every: 30 * time.Second}, joinCache),
		after(roles, api),
		after(cm, roles),
		elected(after(sched, roles)),
		elected(after(deployer, roles)),
		elected(after(&dns.NodeHosts{Kubeconfig: kubeconfigs.admin}, api)),
		elected(after(&nodeaddress.Controller{Kubeconfig: kubeconfigs.admin}, api)),
	}
	if !cfg.DisableHelmController {
		images, err := agent.SystemImages(cfg.SystemDefaultRegistry)
		if err != nil {
			return err
		}
		comps = append(comps, elected(after(&helmchart.Controller{
			Kubeconfig:    kubeconfigs.admin,
			JobImage:      images.HelmJob,
			APIServerPort: cfg.HTTPSPort,
			NodeName:      cfg.NodeName,
		}, api)))
	}
	if !slices.Contains(cfg.Disable, manifests.ServiceLB) {
		comps = append(comps, elected(after(&servicelb.Component{
			Kubeconfig: kubeconfigs.admin,
			Reserved:   reservedPorts(cfg),
			NodeName:   cfg.NodeName,
		}, api)))
	}
	if st.member != nil {
		comps = append(comps, elected(after(&memberRemoval{client: adminClient, etcd: st.member.Client.Get}, api)))
	}
	if snapshots := scheduledSnapshots(cfg, st); snapshots != nil {
		comps = append(comps, after(snapshots, ds))
	}
	if cfg.Node != nil {
		node := &agent.Node{
			Config: &config.CompletedAgent{
				Node:      *cfg.Node,
				ServerURL: local,
				Token:     token.String(),
				// Through the load balancer even here: stopping it cuts the
				// in-process kubelet's watches, which upstream offers no other
				// way to end, so the apiserver can shut down promptly.
				LoadBalancerAddress: config.DefaultLoadBalancerAddress,
			},
			// The join endpoints check tokens against the join cache.
			JoinAfter: []string{joinCache.Name()},
			// The kubelet initialises the CSI volume plugin, whose node-info
			// manager upstream keeps in a package variable: the
			// controller-manager's controllers, built without a node name,
			// must have initialised it before, or the kubelet's CSINode
			// set-up fails and ends the process.
			KubeletAfter: []string{cm.Name()},
		}
		comps = append(comps, node.Components()...)
	}
	graphRuns = true
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
func checkPortFree(bind netip.Addr, port int) error {
	addr := netip.AddrPortFrom(bind, uint16(port)).String()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("port %d on %s is already in use (is another skiff server running?); stop that process or choose another --https-listen-port", port, bind)
		}
		return fmt.Errorf("cannot listen on %s: %w; check --bind-address and --https-listen-port", addr, err)
	}
	return ln.Close()
}

// serverSANs are the names and addresses the apiserver's certificate holds.
func serverSANs(cfg *config.CompletedServer) pki.ServerOptions {
	opts := pki.ServerOptions{ClusterDomain: cfg.Cluster.ClusterDomain}
	addIPs := func(ips ...netip.Addr) {
		for _, ip := range ips {
			opts.IPs = append(opts.IPs, net.IP(ip.AsSlice()))
		}
	}
	if host, err := os.Hostname(); err == nil {
		opts.DNSNames = append(opts.DNSNames, strings.ToLower(host))
	}
	opts.DNSNames = append(opts.DNSNames, cfg.NodeName)
	addIPs(cfg.NodeIPs...)
	addIPs(cfg.Cluster.APIServiceIP, cfg.AdvertiseAddress)
	if !cfg.BindAddress.IsUnspecified() {
		addIPs(cfg.BindAddress)
	}
	addIPs(cfg.SANIPs...)
	opts.DNSNames = append(opts.DNSNames, cfg.SANNames...)
	return opts
}

// loopbackFor picks the address local clients use to reach the server.
func loopbackFor(bind netip.Addr) netip.Addr {
	switch {
	case bind.Is6() && bind.IsUnspecified():
		return netip.IPv6Loopback()
	case bind.IsUnspecified():
		return netip.MustParseAddr("127.0.0.1")
	}
	return bind
}
