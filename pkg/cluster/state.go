// Package cluster runs test clusters of several skiff nodes on one machine
// (`skiff cluster`): each node is a skiff server or agent process in its
// own network, mount and UTS namespace, with its own data dir under
// config.ClustersDir, and the nodes of one cluster share a bridge on the
// host. The package owns the cluster's state file, its network, the
// nodes' namespaces and processes, and nothing of the nodes' insides:
// those are plain `skiff server` and `skiff agent` runs.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/fileutil"
	"github.com/skiff-io/skiff/pkg/layout"
)

// Roles of a node.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
)

// Node is one node of a cluster, as the state file records it.
type Node struct {
	Name   string   `json:"name"`
	Role   string   `json:"role"`
	IP     string   `json:"ip"`
	Netns  string   `json:"netns"`
	Veth   string   `json:"veth"` // the host end, on the bridge
	Labels []string `json:"labels,omitempty"`
	Taints []string `json:"taints,omitempty"`
	Args   []string `json:"args,omitempty"` // extra flags of this node alone
	// Argv is the node's skiff command line, fixed at create so that a
	// start runs the node exactly as before.
	Argv []string `json:"argv,omitempty"`
	// PID and StartTime identify the node's skiff process; StartTime
	// (clock ticks after boot) tells it from a later process of that PID.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
}

// Cluster is the state file of one cluster.
type Cluster struct {
	Name       string    `json:"name"`
	Created    time.Time `json:"created"`
	Binary     string    `json:"binary"` // the skiff binary the nodes run
	Bridge     string    `json:"bridge"`
	Subnet     string    `json:"subnet"` // the nodes' network, e.g. 10.100.3.0/24
	Gateway    string    `json:"gateway"`
	Kubeconfig string    `json:"kubeconfig"` // the host's kubeconfig file
	ServerArgs []string  `json:"serverArgs,omitempty"`
	Nodes      []Node    `json:"nodes"`
	// MadeNetnsDir: /run/netns did not exist before this cluster; the last
	// cluster to go removes it.
	MadeNetnsDir bool `json:"madeNetnsDir,omitempty"`
}

var namePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// maxNameLen keeps node names (NAME-server-1) short DNS labels.
const maxNameLen = 32

func validName(name string) error {
	if name == "" {
		return errors.New("give the cluster a name, e.g. skiff cluster create dev")
	}
	if len(name) > maxNameLen || !namePattern.MatchString(name) {
		return fmt.Errorf("cluster name %q is not valid: use at most %d lower-case letters, digits and dashes, starting and ending with a letter or digit", name, maxNameLen)
	}
	return nil
}

// Dir is where the cluster keeps its state and its nodes' files.
func Dir(name string) string { return filepath.Join(config.ClustersDir, name) }

func statePath(name string) string { return filepath.Join(Dir(name), "cluster.json") }

// tokenPath and agentTokenPath hold the cluster's join secrets (0600):
// the servers', and the agent-only one (--agent-token) that agents join
// with.
func (c *Cluster) tokenPath() string      { return filepath.Join(Dir(c.Name), "token") }
func (c *Cluster) agentTokenPath() string { return filepath.Join(Dir(c.Name), "agent-token") }

// nodeDir holds everything of one node: its data dir, kubelet root, the
// backing dirs of its private /var/lib/cni and /var/log, and its log.
func (c *Cluster) nodeDir(n *Node) string { return filepath.Join(Dir(c.Name), "nodes", n.Name) }

func (c *Cluster) dataDir(n *Node) string { return filepath.Join(c.nodeDir(n), "data") }

func (c *Cluster) paths(n *Node) layout.Layout { return layout.New(c.dataDir(n)) }

func (c *Cluster) logPath(n *Node) string { return filepath.Join(c.nodeDir(n), "skiff.log") }

// serverKubeconfig is where a server node writes its admin kubeconfig.
func (c *Cluster) serverKubeconfig(n *Node) string {
	return filepath.Join(c.nodeDir(n), "admin.kubeconfig")
}

// cgroupRoot is the kubelet's --cgroup-root of the node: its pods' cgroups
// are apart from the host's and from other nodes'.
func (c *Cluster) cgroupRoot(n *Node) string { return "/" + c.scoped(n) }

// scoped names the node's host-wide objects (its network namespace and
// cgroup root) apart from other clusters': names hold no "_".
func (c *Cluster) scoped(n *Node) string { return "skiff_" + c.Name + "_" + n.Name }

func (c *Cluster) servers() []*Node { return c.withRole(RoleServer) }
func (c *Cluster) agents() []*Node  { return c.withRole(RoleAgent) }

func (c *Cluster) withRole(role string) []*Node {
	var out []*Node
	for i := range c.Nodes {
		if c.Nodes[i].Role == role {
			out = append(out, &c.Nodes[i])
		}
	}
	return out
}

func (c *Cluster) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := fileutil.WriteAtomic(statePath(c.Name), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save the state of cluster %s: %w", c.Name, err)
	}
	return nil
}

// load reads the named cluster's state.
func load(name string) (*Cluster, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("there is no cluster named %s on this machine (skiff cluster list shows those there are)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("read the state of cluster %s: %w", name, err)
	}
	var c Cluster
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("the state file %s is damaged (%v); skiff cluster delete %s removes what it can", statePath(name), err, name)
	}
	return &c, nil
}

// all loads every cluster on this machine, by name.
func all() ([]*Cluster, error) {
	entries, err := os.ReadDir(config.ClustersDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	var out []*Cluster
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(statePath(e.Name())); err != nil {
			continue
		}
		c, err := load(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
