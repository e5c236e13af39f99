// Package config holds the validated configuration of a skiff server, the
// single struct that flags, environment and the config file are folded into
// before any component starts.
package config

import "github.com/skiff-io/skiff/pkg/layout"

// Defaults a server uses when neither a flag, an environment variable nor the
// config file says otherwise.
const (
	DefaultDataDir        = layout.DefaultDataDir
	DefaultConfigFile     = "/etc/skiff/config.yaml"
	DefaultKubeconfig     = "/etc/skiff/skiff.yaml"
	DefaultHTTPSPort      = 6443
	DefaultClusterCIDR    = "10.42.0.0/16"
	DefaultServiceCIDR    = "10.43.0.0/16"
	DefaultClusterDNS     = "10.43.0.10"
	DefaultClusterDomain  = "cluster.local"
	DefaultKubeconfigMode = "0600"
	DefaultBindAddress    = "0.0.0.0"
	// Every twelve hours, five kept per server: k3s's defaults.
	DefaultEtcdSnapshotCron      = "0 */12 * * *"
	DefaultEtcdSnapshotRetention = 5
)

// Server is everything `skiff server` needs to run. Fields are filled by
// pkg/cli and checked by Validate; components only read them.
type Server struct {
	DataDir          string
	BindAddress      string
	HTTPSPort        int
	AdvertiseAddress string
	NodeIP           string
	NodeName         string
	TLSSANs          []string

	ClusterCIDR   string
	ServiceCIDR   string
	ClusterDNS    string
	ClusterDomain string

	// Token is the cluster join secret as given by the user (full K10 form or
	// a bare secret); empty means "reuse the stored one or generate one".
	Token string
	// AgentToken is a second secret that joins agents only.
	AgentToken string

	KubeconfigPath string
	KubeconfigMode string

	// DatastoreEndpoint is a kine endpoint; empty selects SQLite in DataDir.
	DatastoreEndpoint string
	// DatastoreCAFile, DatastoreCertFile and DatastoreKeyFile are the TLS
	// files kine uses to reach an external database.
	DatastoreCAFile, DatastoreCertFile, DatastoreKeyFile string
	// ClusterInit starts a new cluster on embedded etcd, which more
	// servers can join.
	ClusterInit bool
	// ServerURL, on a server, is a running server of the embedded etcd
	// cluster this one joins.
	ServerURL string
	// EtcdSnapshotScheduleCron, a five-field cron spec, schedules each
	// server's snapshots of the embedded etcd; empty means the default.
	EtcdSnapshotScheduleCron string
	// EtcdSnapshotRetention is how many scheduled snapshots each server
	// keeps; 0 keeps them all.
	EtcdSnapshotRetention int
	// EtcdSnapshotDir holds the snapshots; empty means the data dir's.
	EtcdSnapshotDir      string
	DisableEtcdSnapshots bool
	// ClusterReset makes this server's etcd member a new one-member
	// cluster keeping its data, after restoring ClusterResetRestorePath
	// if that is set; the server then stops.
	ClusterReset            bool
	ClusterResetRestorePath string

	// SecretsEncryption encrypts Secrets at rest (pkg/secretsencrypt). Once
	// a server has an encryption config it keeps using it without the flag.
	SecretsEncryption bool

	// DisableNetworkPolicy leaves NetworkPolicies unenforced on every node
	// of the cluster.
	DisableNetworkPolicy bool

	DisableAgent bool
	// Disable lists bundled addons (coredns, ingress) not to deploy; a
	// running cluster loses them.
	Disable []string
	// DisableHelmController runs no HelmChart controller (pkg/helmchart).
	DisableHelmController bool
	// LocalStoragePath is where local-path volumes are made on every node;
	// empty means layout.Layout's StorageDir of the server's data dir.
	LocalStoragePath string
	// SystemDefaultRegistry ("host" or "host:port") is the registry the
	// bundled system images are named under instead of skiff.local.
	SystemDefaultRegistry string
	Node

	ExtraAPIServerArgs         []string
	ExtraControllerManagerArgs []string
	ExtraSchedulerArgs         []string

	Debug bool
}
