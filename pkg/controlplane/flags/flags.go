// Package flags generates the command lines skiff runs the control plane's
// upstream components with (kube-apiserver, kube-controller-manager,
// kube-scheduler) from the server's configuration and PKI. It links none
// of those components, so the flags are tested without them.
package flags

import (
	"strconv"
	"strings"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/pki"
)

// Ports the controller-manager and scheduler serve their health checks on,
// on loopback only.
const (
	ControllerManagerPort = 10257
	SchedulerPort         = 10259
)

// Etcd is how the apiserver reaches its storage: kine's socket, or the
// embedded etcd member with a client certificate.
type Etcd struct {
	Servers                   []string
	CAFile, CertFile, KeyFile string
}

// APIServer are the kube-apiserver flags skiff sets. Users append their
// own with --kube-apiserver-arg; later flags win. encryptionConfig is the
// Secrets encryption config file, "" for none.
func APIServer(cfg *config.CompletedServer, p *pki.ServerPKI, etcd Etcd, encryptionConfig string) []string {
	issuer := "https://kubernetes.default.svc." + cfg.Cluster.ClusterDomain
	args := []string{
		"--bind-address=" + cfg.BindAddress.String(),
		"--secure-port=" + strconv.Itoa(cfg.HTTPSPort),
		"--advertise-address=" + cfg.AdvertiseAddress.String(),
		"--etcd-servers=" + strings.Join(etcd.Servers, ","),
		"--storage-backend=etcd3",
		"--allow-privileged=true",
		"--anonymous-auth=false",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		"--client-ca-file=" + p.ClientCACert,
		"--tls-cert-file=" + p.ServingCert,
		"--tls-private-key-file=" + p.ServingKey,
		"--service-cluster-ip-range=" + cfg.Cluster.ServiceCIDRList(),
		"--service-account-issuer=" + issuer,
		"--api-audiences=" + issuer + ",skiff",
		"--service-account-key-file=" + p.ServiceAccountKey,
		"--service-account-signing-key-file=" + p.ServiceAccountKey,
		"--kubelet-client-certificate=" + p.KubeletClientCert,
		"--kubelet-client-key=" + p.KubeletClientKey,
		"--kubelet-certificate-authority=" + p.KubeletTrustBundle,
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--requestheader-client-ca-file=" + p.RequestHeaderCACert,
		"--requestheader-allowed-names=system:auth-proxy",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.AuthProxyCert,
		"--proxy-client-key-file=" + p.AuthProxyKey,
		// The aggregator reaches APIServices' pods (metrics-server) at their
		// endpoints rather than through the Service IP, so it does not wait
		// on kube-proxy's rules on the server's host.
		"--enable-aggregator-routing=true",
		"--profiling=false",
		// Pods' watches (CoreDNS, the ingress, users' controllers) reach the
		// apiserver directly and never go idle: without this, stopping waits
		// out the HTTP server's 60 s shutdown timeout for them. With it,
		// in-flight requests drain and the rest are cut after 2 s.
		"--shutdown-send-retry-after=true",
	}
	if etcd.CertFile != "" {
		args = append(args,
			"--etcd-cafile="+etcd.CAFile,
			"--etcd-certfile="+etcd.CertFile,
			"--etcd-keyfile="+etcd.KeyFile)
	}
	if encryptionConfig != "" {
		// Reloading lets "skiff secrets-encrypt" rotate keys without a
		// restart: the apiserver checks the file once a minute.
		args = append(args,
			"--encryption-provider-config="+encryptionConfig,
			"--encryption-provider-config-automatic-reload=true")
	}
	return args
}

// ControllerManager are the kube-controller-manager flags skiff sets.
func ControllerManager(cfg *config.CompletedServer, p *pki.ServerPKI, kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ControllerManagerPort),
		"--leader-elect=" + leaderElect(cfg),
		// A controller-manager that misses its renew deadline stops for
		// good (in skiff's process, the server with it): 30 s rides out
		// the stalls an etcd leader change causes on a busy small machine,
		// where upstream's 10 s did not; a dead leader is replaced within
		// the 40 s lease.
		"--leader-elect-lease-duration=40s",
		"--leader-elect-renew-deadline=30s",
		// Upstream ends the process when the controller-manager stops
		// leading, even on a requested stop; in skiff's process that would
		// cut the rest of the shutdown short. With this gate a stop releases
		// the lease, so another server takes over at once.
		"--feature-gates=ControllerManagerReleaseLeaderElectionLockOnExit=true",
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + cfg.Cluster.ClusterCIDRList(),
		"--service-cluster-ip-range=" + cfg.Cluster.ServiceCIDRList(),
		"--cluster-signing-kube-apiserver-client-cert-file=" + p.ClientCACert,
		"--cluster-signing-kube-apiserver-client-key-file=" + p.ClientCAKey,
		"--cluster-signing-kubelet-client-cert-file=" + p.ClientCACert,
		"--cluster-signing-kubelet-client-key-file=" + p.ClientCAKey,
		"--cluster-signing-kubelet-serving-cert-file=" + p.KubeletServingCACert,
		"--cluster-signing-kubelet-serving-key-file=" + p.KubeletServingCAKey,
		"--cluster-signing-legacy-unknown-cert-file=" + p.ServerCACert,
		"--cluster-signing-legacy-unknown-key-file=" + p.ServerCAKey,
		"--root-ca-file=" + p.ServerCACert,
		"--service-account-private-key-file=" + p.ServiceAccountKey,
		"--use-service-account-credentials=true",
		// At start, building the controllers makes about three requests each
		// (their ServiceAccounts) through one client; at the default limit
		// of 20 per second after a burst of 30, that alone delayed every
		// controller, node IPAM among them, by 5 s. The apiserver's priority
		// and fairness still guards it against a flood.
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--controllers=*,tokencleaner",
		"--configure-cloud-routes=false",
		"--terminated-pod-gc-threshold=1000",
		"--profiling=false",
	}
}

// Scheduler are the kube-scheduler flags skiff sets. Its own leader
// election stays off: on every stop it ends the process (os.Exit), which
// in skiff's process would cut the shutdown short; skiff elects it as it
// elects its own controllers.
func Scheduler(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(SchedulerPort),
		"--leader-elect=false",
		"--profiling=false",
	}
}

// leaderElect is on wherever another server may run the same
// controller-manager; alone on SQLite, electing would only cost a Lease
// write every 2 s.
func leaderElect(cfg *config.CompletedServer) string {
	return strconv.FormatBool(cfg.Datastore.Shared())
}
