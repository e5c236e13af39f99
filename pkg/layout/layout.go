// Package layout owns where skiff keeps its files: every path under the
// data dir, and the node's runtime dir, is derived here from the data dir.
// Nothing else joins path segments under the data dir; code, scripts'
// callers and tests take paths from a Layout.
package layout

import "path/filepath"

// DefaultDataDir is the data dir unless --data-dir moves it.
const DefaultDataDir = "/var/lib/skiff"

// RunDir holds the node's runtime sockets and state that must not survive
// a reboot (containerd's socket and task state, flannel's subnet file).
const RunDir = "/run/skiff"

// ContainerdStateDir and ContainerdSocket are skiff's containerd's
// transient state and socket under RunDir; the socket differs from
// /run/containerd/containerd.sock so that a host containerd can run beside.
const (
	ContainerdStateDir = RunDir + "/containerd"
	ContainerdSocket   = ContainerdStateDir + "/containerd.sock"
)

// HostCNIBinDir and HostCNIConfDir are where stock CNIs (Calico, Cilium)
// install their plugins and config; with --flannel-backend none the node's
// containerd looks there.
const (
	HostCNIBinDir  = "/opt/cni/bin"
	HostCNIConfDir = "/etc/cni/net.d"
)

// DefaultKubeletRootDir is the kubelet's root unless --kubelet-arg
// root-dir=DIR moves it.
const DefaultKubeletRootDir = "/var/lib/kubelet"

// Layout is every path of one data dir.
type Layout struct {
	DataDir string
	Server  Server
	Agent   Agent
	// HelpersDir holds the helper executables unpacked from the binary,
	// one <content-hash>/bin folder per version.
	HelpersDir string
	// StorageDir holds the local-path volumes, one directory each, unless
	// --default-local-storage-path moves them.
	StorageDir string
	Run        Run
}

// Server is what a server keeps under <data-dir>/server.
type Server struct {
	Dir string
	// TLSDir holds the CAs, keys and certificates (pkg/pki names the files).
	TLSDir string
	// CredDir holds the components' kubeconfigs and the Secrets
	// encryption config.
	CredDir                     string
	AdminKubeconfig             string
	ControllerManagerKubeconfig string
	SchedulerKubeconfig         string
	// DBDir holds the SQLite datastore and kine's socket, or EtcdDir,
	// the embedded etcd member's data.
	DBDir        string
	StateDB      string
	KineSocket   string
	EtcdDir      string
	SnapshotsDir string
	// TokenFile and AgentTokenFile are the cluster and agent-only join
	// tokens, in their K10 form.
	TokenFile      string
	AgentTokenFile string
	// ManifestsDir is the folder kept applied: the bundled addons and
	// users' files.
	ManifestsDir string
}

// Agent is what a node keeps under <data-dir>/agent.
type Agent struct {
	Dir string
	// CredDir holds the node's keys, certificates and kubeconfigs.
	CredDir          string
	NodePasswordFile string
	// EtcDir holds the generated configuration of the node's components.
	EtcDir              string
	ContainerdConfigDir string
	KubeletConfigDir    string
	// KubeletDropInDir holds users' kubelet configuration drop-ins.
	KubeletDropInDir string
	FlannelConfigDir string
	CNIConfDir       string
	// CNIDataDir keeps the CNI plugins' state; CNIIPAMDir, under it, the
	// pod IP allocations.
	CNIDataDir    string
	CNIIPAMDir    string
	ContainerdDir string
	ContainerdLog string
	// ImagesDir is where image archives are dropped to be imported.
	ImagesDir       string
	PodManifestsDir string

	// ContainerdConfigTemplate and ContainerdConfigV3Template, beside the
	// generated config in ContainerdConfigDir, are users' Go templates of
	// containerd's config; the v3 name wins when both exist.
	ContainerdConfigTemplate   string
	ContainerdConfigV3Template string
}

// Run is the node's state under RunDir.
type Run struct {
	Dir           string
	ContainerdDir string
	FlannelDir    string
}

// New derives every path from dataDir.
func New(dataDir string) Layout {
	server := filepath.Join(dataDir, "server")
	cred := filepath.Join(server, "cred")
	db := filepath.Join(server, "db")
	agent := filepath.Join(dataDir, "agent")
	etc := filepath.Join(agent, "etc")
	containerd := filepath.Join(agent, "containerd")
	return Layout{
		DataDir: dataDir,
		Server: Server{
			Dir:                         server,
			TLSDir:                      filepath.Join(server, "tls"),
			CredDir:                     cred,
			AdminKubeconfig:             filepath.Join(cred, "admin.kubeconfig"),
			ControllerManagerKubeconfig: filepath.Join(cred, "controller-manager.kubeconfig"),
			SchedulerKubeconfig:         filepath.Join(cred, "scheduler.kubeconfig"),
			DBDir:                       db,
			StateDB:                     filepath.Join(db, "state.db"),
			KineSocket:                  filepath.Join(db, "kine.sock"),
			EtcdDir:                     filepath.Join(db, "etcd"),
			SnapshotsDir:                filepath.Join(db, "snapshots"),
			TokenFile:                   filepath.Join(server, "token"),
			AgentTokenFile:              filepath.Join(server, "agent-token"),
			ManifestsDir:                filepath.Join(server, "manifests"),
		},
		Agent: Agent{
			Dir:                 agent,
			CredDir:             filepath.Join(agent, "cred"),
			NodePasswordFile:    filepath.Join(agent, "node-password"),
			EtcDir:              etc,
			ContainerdConfigDir: filepath.Join(etc, "containerd"),
			KubeletConfigDir:    filepath.Join(etc, "kubelet"),
			KubeletDropInDir:    filepath.Join(etc, "kubelet.conf.d"),
			FlannelConfigDir:    filepath.Join(etc, "flannel"),
			CNIConfDir:          filepath.Join(etc, "cni", "net.d"),
			CNIDataDir:          filepath.Join(agent, "cni"),
			CNIIPAMDir:          filepath.Join(agent, "cni", "networks"),
			ContainerdDir:       containerd,
			ContainerdLog:       filepath.Join(containerd, "containerd.log"),
			ImagesDir:           filepath.Join(agent, "images"),
			PodManifestsDir:     filepath.Join(agent, "pod-manifests"),

			ContainerdConfigTemplate:   filepath.Join(etc, "containerd", "config.toml.tmpl"),
			ContainerdConfigV3Template: filepath.Join(etc, "containerd", "config-v3.toml.tmpl"),
		},
		HelpersDir: filepath.Join(dataDir, "data"),
		StorageDir: filepath.Join(dataDir, "storage"),
		Run: Run{
			Dir:           RunDir,
			ContainerdDir: ContainerdStateDir,
			FlannelDir:    filepath.Join(RunDir, "flannel"),
		},
	}
}
