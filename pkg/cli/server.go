package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/manifests"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

// flagServer names the server a node (or a server joining an embedded
// etcd cluster) joins.
const flagServer = "server"

// Long flag names; each is also the config file key.
const (
	flagConfig               = "config"
	flagDataDir              = "data-dir"
	flagBindAddress          = "bind-address"
	flagHTTPSPort            = "https-listen-port"
	flagAdvertiseAddress     = "advertise-address"
	flagNodeIP               = "node-ip"
	flagNodeName             = "node-name"
	flagTLSSAN               = "tls-san"
	flagClusterCIDR          = "cluster-cidr"
	flagServiceCIDR          = "service-cidr"
	flagClusterDNS           = "cluster-dns"
	flagClusterDomain        = "cluster-domain"
	flagToken                = "token"
	flagTokenFile            = "token-file"
	flagKubeconfig           = "write-kubeconfig"
	flagKubeconfigMode       = "write-kubeconfig-mode"
	flagDatastoreEndpoint    = "datastore-endpoint"
	flagDatastoreCAFile      = "datastore-cafile"
	flagDatastoreCertFile    = "datastore-certfile"
	flagDatastoreKeyFile     = "datastore-keyfile"
	flagClusterInit          = "cluster-init"
	flagSecretsEncryption    = "secrets-encryption"
	flagDisableAgent         = "disable-agent"
	flagDisable              = "disable"
	flagDisableNetworkPolicy = "disable-network-policy"
	flagDisableHelm          = "disable-helm-controller"
	flagLocalStoragePath     = "default-local-storage-path"
	flagAPIServerArg         = "kube-apiserver-arg"
	flagControllerManagerArg = "kube-controller-manager-arg"
	flagSchedulerArg         = "kube-scheduler-arg"
	flagDebug                = "debug"
	flagNodeLabel            = "node-label"
	flagNodeTaint            = "node-taint"
	flagKubeletArg           = "kubelet-arg"
	flagKubeProxyArg         = "kube-proxy-arg"
	flagFlannelBackend       = "flannel-backend"
	flagFlannelIface         = "flannel-iface"
	flagSnapshotter          = "snapshotter"
	flagRegistries           = "registries"
	flagDefaultRuntime       = "default-runtime"
	flagAgentToken           = "agent-token"
	flagNodeExternalIP       = "node-external-ip"
	flagNodeInternalDNS      = "node-internal-dns"
	flagNodeExternalDNS      = "node-external-dns"
	flagSystemRegistry       = "system-default-registry"
	flagNoDefaultEndpoint    = "disable-default-registry-endpoint"
)

// The embedded etcd's snapshots and recovery, named as in k3s.
const (
	flagEtcdSnapshotScheduleCron = "etcd-snapshot-schedule-cron"
	flagEtcdSnapshotRetention    = "etcd-snapshot-retention"
	flagEtcdSnapshotDir          = "etcd-snapshot-dir"
	flagDisableEtcdSnapshots     = "disable-etcd-snapshots"
	flagClusterReset             = "cluster-reset"
	flagClusterResetRestorePath  = "cluster-reset-restore-path"
)

const (
	categoryGeneral    = "General"
	categoryListener   = "Listener"
	categoryNetworking = "Networking"
	categoryNode       = "Node"
	categoryCluster    = "Cluster"
	categoryKubeconfig = "Kubeconfig"
	categoryComponents = "Components"
	categoryEtcd       = "Embedded etcd"
)

// envVar derives the environment variable for a flag; a few flags keep the
// shorter names users know from elsewhere, so they are spelled out.
func envVar(name string) []string {
	switch name {
	case flagConfig:
		return []string{"SKIFF_CONFIG_FILE"}
	case flagKubeconfig:
		return []string{"SKIFF_KUBECONFIG_OUTPUT"}
	case flagKubeconfigMode:
		return []string{"SKIFF_KUBECONFIG_MODE"}
	case flagServer:
		return []string{"SKIFF_URL"}
	}
	return []string{"SKIFF_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:      flagConfig,
		Aliases:   []string{"c"},
		Category:  categoryGeneral,
		Usage:     "YAML file whose keys are the long flag names; flags and environment override it (empty disables it)",
		Value:     config.DefaultConfigFile,
		EnvVars:   envVar(flagConfig),
		TakesFile: true,
	}
}

func dataDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:      flagDataDir,
		Aliases:   []string{"d"},
		Category:  categoryGeneral,
		Usage:     "absolute directory for certificates, the datastore and the cluster token",
		Value:     config.DefaultDataDir,
		EnvVars:   envVar(flagDataDir),
		TakesFile: true,
	}
}

// serverFlags also serves as the schema of the config file: its long names
// are the only accepted keys and its types decide how values are read.
func serverFlags() []cli.Flag {
	str := func(name, category, usage, value string) *cli.StringFlag {
		return &cli.StringFlag{Name: name, Category: category, Usage: usage, Value: value, EnvVars: envVar(name)}
	}
	list := func(name, category, usage string) *cli.StringSliceFlag {
		return &cli.StringSliceFlag{Name: name, Category: category, Usage: usage, EnvVars: envVar(name)}
	}

	token := str(flagToken, categoryCluster, "cluster join secret (full K10 form or bare secret); default: reuse the stored one or generate one", "")
	token.Aliases = []string{"t"}
	tokenFile := str(flagTokenFile, categoryCluster, "file holding the cluster join secret; exclusive with --token", "")
	tokenFile.TakesFile = true
	serverURL := str(flagServer, categoryCluster, "URL of a running server whose embedded etcd cluster this server joins, e.g. https://192.168.1.10:6443; needs --token", "")
	serverURL.Aliases = []string{"s"}
	file := func(name, usage string) *cli.StringFlag {
		f := str(name, categoryCluster, usage, "")
		f.TakesFile = true
		return f
	}
	kubeconfig := str(flagKubeconfig, categoryKubeconfig, "where to write the admin kubeconfig", config.DefaultKubeconfig)
	kubeconfig.Aliases = []string{"o"}
	kubeconfig.TakesFile = true

	return []cli.Flag{
		configFlag(),
		dataDirFlag(),
		&cli.BoolFlag{Name: flagDebug, Category: categoryGeneral, Usage: "log at debug level", EnvVars: envVar(flagDebug)},

		str(flagBindAddress, categoryListener, "IP address the API server listens on", config.DefaultBindAddress),
		&cli.IntFlag{Name: flagHTTPSPort, Category: categoryListener, Usage: "port the API server listens on", Value: config.DefaultHTTPSPort, EnvVars: envVar(flagHTTPSPort)},
		str(flagAdvertiseAddress, categoryListener, "IP address the API server advertises to the cluster (default: the node IP)", ""),
		list(flagTLSSAN, categoryListener, "extra IP address or DNS name for the serving certificate; repeat the flag or separate with commas"),

		str(flagClusterCIDR, categoryNetworking, "pod IP range; IPv4, IPv6 or \"v4,v6\" for dual stack", config.DefaultClusterCIDR),
		str(flagServiceCIDR, categoryNetworking, "service IP range; IPv4 (/12 or longer), IPv6 (/108 or longer) or \"v4,v6\"", config.DefaultServiceCIDR),
		str(flagClusterDNS, categoryNetworking, "cluster DNS service IP, inside --service-cidr", config.DefaultClusterDNS),
		str(flagClusterDomain, categoryNetworking, "cluster DNS domain", config.DefaultClusterDomain),

		str(flagNodeIP, categoryNode, "IP address of this node; \"v4,v6\" for dual stack (default: detected)", ""),
		str(flagNodeName, categoryNode, "name of this node (default: the hostname)", ""),
		str(flagNodeExternalIP, categoryNode, "the node's ExternalIP, \"v4,v6\" for dual stack: the address other nodes and clients reach it at when it is behind NAT; the pod network advertises it", ""),
		list(flagNodeInternalDNS, categoryNode, "the node's InternalDNS address; repeat the flag or separate with commas"),
		list(flagNodeExternalDNS, categoryNode, "the node's ExternalDNS address; repeat the flag or separate with commas"),
		&cli.BoolFlag{Name: flagDisableAgent, Category: categoryNode, Usage: "run only the control plane, no kubelet on this host", EnvVars: envVar(flagDisableAgent)},
		list(flagNodeLabel, categoryNode, "label to register the node with, key=value; repeat the flag"),
		list(flagNodeTaint, categoryNode, "taint to register the node with, key=value:Effect; repeat the flag"),
		str(flagFlannelBackend, categoryNetworking, "pod network backend: vxlan, host-gw, or none to bring your own CNI (its plugins in /opt/cni/bin, its config in /etc/cni/net.d)", config.DefaultFlannelBackend),
		str(flagFlannelIface, categoryNetworking, "interface the pod network uses between nodes (default: the node IP's interface)", ""),
		str(flagSnapshotter, categoryNode, "containerd snapshotter: overlayfs or native (default: overlayfs where it works)", ""),
		&cli.StringFlag{Name: flagRegistries, Category: categoryNode, Usage: "registry mirrors, auth and TLS settings for containerd", Value: config.DefaultRegistriesFile, EnvVars: envVar(flagRegistries), TakesFile: true},
		&cli.BoolFlag{Name: flagNoDefaultEndpoint, Category: categoryNode, Usage: "pull images of a registry with mirrors in the registries file from those mirrors only, never from the registry itself", EnvVars: envVar(flagNoDefaultEndpoint)},
		str(flagDefaultRuntime, categoryNode, "runtime handler pods without a RuntimeClass run with: one found on the host (crun, nvidia, runsc, kata...) or added by a containerd config template (default: the bundled runc)", ""),

		token,
		tokenFile,
		str(flagAgentToken, categoryCluster, "second join secret that admits agents only; print its full form with \"skiff token --agent\"", ""),
		&cli.BoolFlag{Name: flagClusterInit, Category: categoryCluster, Usage: "start a new cluster on embedded etcd, which more servers can join with --server", EnvVars: envVar(flagClusterInit)},
		serverURL,
		str(flagDatastoreEndpoint, categoryCluster, "external datastore as a kine endpoint (postgres://, mysql://, ...); servers given the same one and --token form one cluster (default: SQLite in the data dir)", ""),
		file(flagDatastoreCAFile, "CA certificate the external datastore's server certificate is verified with"),
		file(flagDatastoreCertFile, "client certificate for the external datastore"),
		file(flagDatastoreKeyFile, "client key for the external datastore"),
		str(flagEtcdSnapshotScheduleCron, categoryEtcd, "when each server saves a snapshot of its etcd member, as a five-field cron spec (minute hour day-of-month month day-of-week) in the host's time zone", config.DefaultEtcdSnapshotCron),
		&cli.IntFlag{Name: flagEtcdSnapshotRetention, Category: categoryEtcd, Usage: "how many scheduled snapshots each server keeps; older ones are deleted after each new one (0 keeps them all)", Value: config.DefaultEtcdSnapshotRetention, EnvVars: envVar(flagEtcdSnapshotRetention)},
		etcdSnapshotDirFlag(),
		&cli.BoolFlag{Name: flagDisableEtcdSnapshots, Category: categoryEtcd, Usage: "take no scheduled snapshots of the embedded etcd", EnvVars: envVar(flagDisableEtcdSnapshots)},
		&cli.BoolFlag{Name: flagClusterReset, Category: categoryEtcd, EnvVars: envVar(flagClusterReset),
			Usage: "make this server's etcd member a new cluster of one that keeps its data, for when too few servers are left for a quorum; " +
				"skiff then exits: start it again without this flag, and rejoin the other servers with --server after moving their etcd data (server/db/etcd in their data dir) away"},
		&cli.StringFlag{Name: flagClusterResetRestorePath, Category: categoryEtcd, EnvVars: envVar(flagClusterResetRestorePath), TakesFile: true,
			Usage: "with --cluster-reset: first restore this snapshot file (the current etcd data is kept beside it, as server/db/etcd-old-UNIXTIME in the data dir), then exit as --cluster-reset does"},
		&cli.BoolFlag{Name: flagSecretsEncryption, Category: categoryCluster, Usage: "encrypt Secrets at rest with a key kept in the data dir (server/cred); once on, it stays on (see \"skiff secrets-encrypt\")", EnvVars: envVar(flagSecretsEncryption)},
		&cli.BoolFlag{Name: flagDisableNetworkPolicy, Category: categoryNetworking, Usage: "leave NetworkPolicies unenforced on every node (each node otherwise runs kube-router's network policy controller, which needs the ipset tool)", EnvVars: envVar(flagDisableNetworkPolicy)},
		list(flagDisable, categoryCluster, "addon not to deploy, removed if it runs: a bundled one ("+strings.Join(manifests.Addons(), ", ")+") or a file of the manifests folder, named without its extension; repeat the flag or separate with commas"),
		&cli.BoolFlag{Name: flagDisableHelm, Category: categoryCluster, Usage: "run no HelmChart controller: the HelmChart and HelmChartConfig APIs (helm.cattle.io) are not installed, and releases they made earlier stay as they are", EnvVars: envVar(flagDisableHelm)},
		str(flagSystemRegistry, categoryCluster, "registry host the bundled system images are named under, e.g. registry.example:5000 makes skiff.local/system/coredns registry.example:5000/system/coredns; the nodes still have them offline", ""),
		str(flagLocalStoragePath, categoryCluster, "directory on each node that volumes of the local-path storage class are created in (default: storage in the data dir)", ""),

		kubeconfig,
		str(flagKubeconfigMode, categoryKubeconfig, "octal file mode of the admin kubeconfig", config.DefaultKubeconfigMode),

		list(flagAPIServerArg, categoryComponents, "extra kube-apiserver flag as key=value; repeat the flag, commas stay in the value"),
		list(flagControllerManagerArg, categoryComponents, "extra kube-controller-manager flag as key=value; repeat the flag, commas stay in the value"),
		list(flagSchedulerArg, categoryComponents, "extra kube-scheduler flag as key=value; repeat the flag, commas stay in the value"),
		list(flagKubeletArg, categoryComponents, "extra kubelet flag as key=value; repeat the flag, commas stay in the value"),
		list(flagKubeProxyArg, categoryComponents, "extra kube-proxy flag as key=value; repeat the flag, commas stay in the value"),
	}
}

// configurable gives a command the shared handling of flag errors and of
// the config file, which fills every flag the command line and environment
// left unset.
func configurable(cmd *cli.Command) *cli.Command {
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return inCommand(cmd.Name, usageError(appName+" "+cmd.Name, err))
	}
	cmd.Before = func(c *cli.Context) error {
		return inCommand(cmd.Name, applyConfigFile(c))
	}
	return cmd
}

func serverCommand(a Actions) *cli.Command {
	const name = "server"
	return configurable(&cli.Command{
		Name:      name,
		Usage:     "run the Kubernetes control plane (and, unless disabled, a node)",
		UsageText: "skiff server [flags]",
		Description: "Each setting is taken from, in order of precedence: the command-line flag, its SKIFF_* environment\n" +
			"variable, the config file (--config; keys are the long flag names, e.g. \"data-dir: /srv/skiff\",\n" +
			"lists as YAML sequences) and the built-in default.",
		Flags: serverFlags(),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return inCommand(name, fmt.Errorf("unexpected argument %q; server takes only flags", c.Args().First()))
			}
			opts, err := serverConfig(c)
			if err != nil {
				return inCommand(name, err)
			}
			cfg, err := opts.Complete()
			if err != nil {
				return inCommand(name, err)
			}
			if a.Server == nil {
				return inCommand(name, errors.New("the server is not available in this build"))
			}
			return inCommand(name, a.Server(c.Context, cfg))
		},
	})
}

// serverConfig copies the merged flag values into a config.Server.
func serverConfig(c *cli.Context) (*config.Server, error) {
	cfg := &config.Server{
		DataDir:                    c.String(flagDataDir),
		BindAddress:                c.String(flagBindAddress),
		HTTPSPort:                  c.Int(flagHTTPSPort),
		AdvertiseAddress:           c.String(flagAdvertiseAddress),
		NodeIP:                     c.String(flagNodeIP),
		NodeName:                   c.String(flagNodeName),
		TLSSANs:                    splitCommas(c.StringSlice(flagTLSSAN)),
		ClusterCIDR:                c.String(flagClusterCIDR),
		ServiceCIDR:                c.String(flagServiceCIDR),
		ClusterDNS:                 c.String(flagClusterDNS),
		ClusterDomain:              c.String(flagClusterDomain),
		Token:                      c.String(flagToken),
		AgentToken:                 c.String(flagAgentToken),
		KubeconfigPath:             c.String(flagKubeconfig),
		KubeconfigMode:             c.String(flagKubeconfigMode),
		DatastoreEndpoint:          c.String(flagDatastoreEndpoint),
		DatastoreCAFile:            c.String(flagDatastoreCAFile),
		DatastoreCertFile:          c.String(flagDatastoreCertFile),
		DatastoreKeyFile:           c.String(flagDatastoreKeyFile),
		ClusterInit:                c.Bool(flagClusterInit),
		ServerURL:                  c.String(flagServer),
		EtcdSnapshotScheduleCron:   c.String(flagEtcdSnapshotScheduleCron),
		EtcdSnapshotRetention:      c.Int(flagEtcdSnapshotRetention),
		EtcdSnapshotDir:            c.String(flagEtcdSnapshotDir),
		DisableEtcdSnapshots:       c.Bool(flagDisableEtcdSnapshots),
		ClusterReset:               c.Bool(flagClusterReset),
		ClusterResetRestorePath:    c.String(flagClusterResetRestorePath),
		SecretsEncryption:          c.Bool(flagSecretsEncryption),
		DisableAgent:               c.Bool(flagDisableAgent),
		DisableNetworkPolicy:       c.Bool(flagDisableNetworkPolicy),
		Disable:                    splitCommas(c.StringSlice(flagDisable)),
		DisableHelmController:      c.Bool(flagDisableHelm),
		LocalStoragePath:           c.String(flagLocalStoragePath),
		SystemDefaultRegistry:      c.String(flagSystemRegistry),
		ExtraAPIServerArgs:         copyList(c.StringSlice(flagAPIServerArg)),
		ExtraControllerManagerArgs: copyList(c.StringSlice(flagControllerManagerArg)),
		ExtraSchedulerArgs:         copyList(c.StringSlice(flagSchedulerArg)),
		Debug:                      c.Bool(flagDebug),
		Node: config.Node{
			NodeLabels:         splitCommas(c.StringSlice(flagNodeLabel)),
			NodeTaints:         splitCommas(c.StringSlice(flagNodeTaint)),
			ExtraKubeletArgs:   copyList(c.StringSlice(flagKubeletArg)),
			ExtraKubeProxyArgs: copyList(c.StringSlice(flagKubeProxyArg)),
			FlannelBackend:     c.String(flagFlannelBackend),
			FlannelIface:       c.String(flagFlannelIface),
			NodeExternalIP:     c.String(flagNodeExternalIP),
			NodeInternalDNS:    splitCommas(c.StringSlice(flagNodeInternalDNS)),
			NodeExternalDNS:    splitCommas(c.StringSlice(flagNodeExternalDNS)),
			NoDefaultEndpoint:  c.Bool(flagNoDefaultEndpoint),
			Snapshotter:        c.String(flagSnapshotter),
			RegistriesFile:     c.String(flagRegistries),
			DefaultRuntime:     c.String(flagDefaultRuntime),
		},
	}
	token, err := joinToken(c)
	if err != nil {
		return nil, err
	}
	cfg.Token = token
	return cfg, nil
}

// joinToken returns --token, or the contents of --token-file.
func joinToken(c *cli.Context) (string, error) {
	if !c.IsSet(flagTokenFile) {
		return c.String(flagToken), nil
	}
	if c.IsSet(flagToken) {
		return "", errors.New("--token and --token-file (or SKIFF_TOKEN and SKIFF_TOKEN_FILE, or the config keys) both given; pass only one")
	}
	return readTokenFile(c.String(flagTokenFile))
}

func readTokenFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("--token-file is empty; give the path of a file holding the cluster token")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read --token-file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("--token-file %s is empty; write the cluster token into it", path)
	}
	return token, nil
}

// splitCommas lets --tls-san take comma lists although slice splitting is
// disabled app-wide; a SAN can never contain a comma, so this is lossless.
func splitCommas(values []string) []string {
	var out []string
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(part))
		}
	}
	return out
}

// copyList detaches the result from urfave's internal slice.
func copyList(values []string) []string {
	if len(values) == 0 {
		return nil
	}
	return append([]string(nil), values...)
}

func tokenCommand(a Actions) *cli.Command {
	const name = "token"
	manage := func(op string, flags []cli.Flag, usage, usageText string, build func(*cli.Context, *config.TokenRequest) error) *cli.Command {
		full := name + " " + op
		return configurable(&cli.Command{
			Name:      op,
			Usage:     usage,
			UsageText: usageText,
			Flags:     append([]cli.Flag{configFlag(), dataDirFlag()}, flags...),
			Action: func(c *cli.Context) error {
				req := &config.TokenRequest{Op: op, DataDir: c.String(flagDataDir), Out: c.App.Writer}
				if err := build(c, req); err != nil {
					return inCommand(full, err)
				}
				if a.Token == nil {
					return inCommand(full, errors.New("token management is not available in this build"))
				}
				return inCommand(full, a.Token(c.Context, req))
			},
		})
	}
	noArgs := func(c *cli.Context, _ *config.TokenRequest) error {
		if c.Args().Present() {
			return fmt.Errorf("unexpected argument %q", c.Args().First())
		}
		return nil
	}
	return configurable(&cli.Command{
		Name:      name,
		Usage:     "print the cluster join token of the local server, or manage agent join tokens",
		UsageText: "skiff token [--agent] [--data-dir DIR]\n   skiff token create|list|delete ...",
		Flags: []cli.Flag{configFlag(), dataDirFlag(),
			&cli.BoolFlag{Name: "agent", Usage: "print the agent-only token (--agent-token of the server) instead"}},
		Subcommands: []*cli.Command{
			manage("create", []cli.Flag{
				&cli.DurationFlag{Name: "ttl", Usage: "how long the token admits agents; 0 means until deleted", Value: 24 * time.Hour},
				&cli.StringFlag{Name: "description", Usage: "note shown by \"skiff token list\""},
			}, "create a join token that admits agents (not servers), valid for --ttl", "skiff token create [--ttl 24h] [--description TEXT]",
				func(c *cli.Context, r *config.TokenRequest) error {
					if err := noArgs(c, r); err != nil {
						return err
					}
					if c.Duration("ttl") < 0 {
						return fmt.Errorf("invalid --ttl %s; use a positive duration such as 2h, or 0 for no expiry", c.Duration("ttl"))
					}
					r.TTL, r.Description = c.Duration("ttl"), c.String("description")
					return nil
				}),
			manage("list", nil, "list the agent join tokens", "skiff token list", noArgs),
			manage("delete", nil, "delete an agent join token by its ID", "skiff token delete ID",
				func(c *cli.Context, r *config.TokenRequest) error {
					if c.Args().Len() != 1 {
						return errors.New("give exactly one token ID, as shown by \"skiff token list\"")
					}
					r.ID = c.Args().First()
					return nil
				}),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return inCommand(name, fmt.Errorf("unknown argument %q; run \"skiff token --help\"", c.Args().First()))
			}
			paths := layout.New(c.String(flagDataDir)).Server
			path := paths.TokenFile
			if c.Bool("agent") {
				path = paths.AgentTokenFile
			}
			data, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				if c.Bool("agent") {
					return inCommand(name, fmt.Errorf("no agent token at %s: start the server with --agent-token to have one", path))
				}
				return inCommand(name, fmt.Errorf("no token at %s: start \"skiff server\" first (or pass --data-dir)", path))
			}
			if err != nil {
				return inCommand(name, fmt.Errorf("read token: %w", err))
			}
			token := strings.TrimSpace(string(data))
			if token == "" {
				return inCommand(name, fmt.Errorf("token file %s is empty; check that \"skiff server\" started with this data dir", path))
			}
			_, err = fmt.Fprintln(c.App.Writer, token)
			return inCommand(name, err)
		},
	})
}
