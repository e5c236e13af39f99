package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/fileutil"
	"github.com/skiff-io/skiff/pkg/layout"
)

// readyTimeout bounds how long create and start wait for the nodes and
// the bundled addons.
const readyTimeout = 10 * time.Minute

// Run carries out one `skiff cluster` command.
func Run(ctx context.Context, req *config.ClusterRequest) error {
	out := req.Out
	if out == nil {
		out = os.Stdout
	}
	if req.Op == "list" {
		return list(out)
	}
	if os.Geteuid() != 0 {
		return errors.New("skiff cluster needs root: it creates network namespaces, a bridge, mounts and cgroups; run it with sudo")
	}
	switch req.Op {
	case "create":
		return create(ctx, req, out)
	}
	c, err := load(req.Name)
	if err != nil {
		return err
	}
	switch req.Op {
	case "kubeconfig":
		b, err := c.renderKubeconfig()
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	case "stop":
		if err := c.stopNodes(c.nodePointers(), 90*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(out, "cluster %s stopped; its %d nodes keep their data (skiff cluster start %s)\n", c.Name, len(c.Nodes), c.Name)
		return nil
	case "start":
		return c.start(ctx, out)
	case "delete":
		return c.delete(out)
	case "load":
		return c.load(ctx, req.Archives, out)
	}
	return fmt.Errorf("unknown cluster command %q", req.Op)
}

func (c *Cluster) nodePointers() []*Node {
	out := make([]*Node, len(c.Nodes))
	for i := range c.Nodes {
		out[i] = &c.Nodes[i]
	}
	return out
}

// DefaultKubeconfig is where create writes the host's kubeconfig unless
// told otherwise.
func DefaultKubeconfig(name string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".kube", "skiff-"+name+".yaml")
}

func create(ctx context.Context, req *config.ClusterRequest, out io.Writer) (err error) {
	began := time.Now()
	if err := validName(req.Name); err != nil {
		return err
	}
	if err := notExisting(req.Name); err != nil {
		return err
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed; skiff cluster needs it (apt install iproute2 iptables)", tool)
		}
	}
	var file *File
	if req.ConfigFile != "" {
		if file, err = readFile(req.ConfigFile); err != nil {
			return err
		}
	}
	nodes, err := planNodes(req.Name, req.Servers, req.Agents, file)
	if err != nil {
		return err
	}
	archives, err := archivesIn(req.ImageDir)
	if err != nil {
		return err
	}
	binary, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the skiff binary: %w", err)
	}
	if err := os.MkdirAll(config.ClustersDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", config.ClustersDir, err)
	}
	// Two creates at once must not pick the same network.
	unlock, err := lockClusters()
	if err != nil {
		return err
	}
	defer unlock()
	if err := notExisting(req.Name); err != nil {
		return err
	}
	others, err := all()
	if err != nil {
		return err
	}
	subnet, index, err := pickSubnet(others)
	if err != nil {
		return err
	}
	_, netnsDirErr := os.Stat(netnsDir)
	c := &Cluster{
		Name:       req.Name,
		Created:    time.Now().UTC(),
		Binary:     binary,
		Bridge:     bridgeName(index),
		Subnet:     subnet.String(),
		Gateway:    nodeIP(subnet, -1),
		Kubeconfig: req.Kubeconfig,
		ServerArgs: req.ServerArgs,
		Nodes:      nodes,
		// Inherited from a cluster that made it and is still there.
		MadeNetnsDir: errors.Is(netnsDirErr, os.ErrNotExist) || slices.ContainsFunc(others, func(o *Cluster) bool { return o.MadeNetnsDir }),
	}
	if c.Kubeconfig == "" {
		c.Kubeconfig = DefaultKubeconfig(c.Name)
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		n.IP = nodeIP(subnet, i)
		n.Netns = c.scoped(n)
		n.Veth = fmt.Sprintf("%s-%d", c.Bridge, i)
	}
	if err := os.Mkdir(Dir(c.Name), 0o700); err != nil {
		return fmt.Errorf("create the cluster's dir: %w", err)
	}
	if err := c.save(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nthe nodes' logs are in %s; skiff cluster delete %s removes what was made", err, filepath.Join(Dir(c.Name), "nodes", "*", "skiff.log"), c.Name)
		}
	}()
	if err := c.setUpNetwork(); err != nil {
		return err
	}
	unlock()
	for _, path := range []string{c.tokenPath(), c.agentTokenPath()} {
		secret := make([]byte, 16)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		if err := fileutil.WriteAtomic(path, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
			return fmt.Errorf("write the cluster's tokens: %w", err)
		}
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if err := c.writeNodeFiles(n); err != nil {
			return err
		}
		for _, a := range archives {
			if err := linkOrCopy(a, filepath.Join(c.paths(n).Agent.ImagesDir, filepath.Base(a))); err != nil {
				return fmt.Errorf("put %s on node %s: %w", a, n.Name, err)
			}
		}
	}
	servers, agents := c.servers(), c.agents()
	first := servers[0]
	first.Argv = c.argv(first, nil)
	if err := c.launch(first); err != nil {
		return err
	}
	apiURL, err := c.waitServerUp(ctx, first)
	if err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	for _, n := range servers[1:] {
		n.Argv = c.argv(n, c.joinArgs(apiURL, first, RoleServer))
		if err := c.launch(n); err != nil {
			return err
		}
		// One at a time: etcd takes one learner at a time.
		if err := c.waitNodesReady(ctx, []*Node{n}, readyTimeout); err != nil {
			return err
		}
	}
	for _, n := range agents {
		n.Argv = c.argv(n, c.joinArgs(apiURL, first, RoleAgent))
		if err := c.launch(n); err != nil {
			return err
		}
	}
	if err := c.waitReady(ctx, readyTimeout, time.Time{}, nil); err != nil {
		return err
	}
	fmt.Fprintf(out, "cluster %s ready in %s: %d servers, %d agents on %s; kubeconfig at %s\n",
		c.Name, time.Since(began).Round(100*time.Millisecond), len(servers), len(agents), c.Subnet, c.Kubeconfig)
	return nil
}

func notExisting(name string) error {
	if _, err := os.Stat(Dir(name)); err == nil {
		return fmt.Errorf("a cluster named %s already exists; delete it with skiff cluster delete %s, or pick another name", name, name)
	}
	return nil
}

func (c *Cluster) setUpNetwork() error {
	if err := c.setUpBridge(); err != nil {
		return err
	}
	for i := range c.Nodes {
		if err := c.setUpNodeNet(&c.Nodes[i]); err != nil {
			return err
		}
	}
	return nil
}

// configPath is the node's (empty) config file: the host's
// /etc/skiff/config.yaml configures the host's skiff, not the cluster's.
func (c *Cluster) configPath(n *Node) string { return filepath.Join(c.nodeDir(n), "config.yaml") }

func (c *Cluster) writeNodeFiles(n *Node) error {
	if err := os.MkdirAll(c.paths(n).Agent.ImagesDir, 0o700); err != nil {
		return fmt.Errorf("create the dirs of node %s: %w", n.Name, err)
	}
	if err := fileutil.WriteAtomic(c.configPath(n), nil, 0o600); err != nil {
		return fmt.Errorf("write the config of node %s: %w", n.Name, err)
	}
	return nil
}

// usesExternalDatastore: the servers share a database the user named.
func (c *Cluster) usesExternalDatastore() bool {
	return slices.ContainsFunc(c.ServerArgs, func(a string) bool { return strings.HasPrefix(a, "--datastore-endpoint") })
}

// argv is the node's skiff command line.
func (c *Cluster) argv(n *Node, join []string) []string {
	args := []string{c.Binary, n.Role,
		"--data-dir", c.dataDir(n),
		"--config", c.configPath(n),
		"--node-name", n.Name,
		"--node-ip", n.IP,
		"--flannel-iface", nodeIface,
		"--kubelet-arg=root-dir=" + c.kubeletDir(n),
		"--kubelet-arg=cgroup-root=" + c.cgroupRoot(n),
	}
	for _, l := range n.Labels {
		args = append(args, "--node-label", l)
	}
	for _, t := range n.Taints {
		args = append(args, "--node-taint", t)
	}
	if n.Role == RoleServer {
		args = append(args, "--write-kubeconfig", c.serverKubeconfig(n))
		if join == nil {
			args = append(args, "--token-file", c.tokenPath())
			if len(c.servers()) > 1 && !c.usesExternalDatastore() {
				args = append(args, "--cluster-init")
			}
		}
		args = append(args, c.ServerArgs...)
	}
	args = append(args, join...)
	return append(args, n.Args...)
}

// joinArgs are the flags by which a node joins the first server: its
// CA-pinning tokens, the agent-only one for agents.
func (c *Cluster) joinArgs(apiURL string, first *Node, role string) []string {
	l := c.paths(first)
	if role == RoleAgent {
		return []string{"--server", apiURL, "--token-file", l.Server.AgentTokenFile}
	}
	if c.usesExternalDatastore() {
		return []string{"--token-file", c.tokenPath()}
	}
	return []string{"--server", apiURL, "--token-file", l.Server.TokenFile}
}

// waitServerUp waits until the server has written its kubeconfig and
// tokens and its apiserver answers; it returns the apiserver's URL on the
// node's address.
func (c *Cluster) waitServerUp(ctx context.Context, n *Node) (string, error) {
	deadline := time.Now().Add(readyTimeout)
	l := c.paths(n)
	for {
		if err := c.alive(n); err != nil {
			return "", err
		}
		_, errK := os.Stat(c.serverKubeconfig(n))
		_, errT := os.Stat(l.Server.TokenFile)
		if errK == nil && errT == nil {
			if u, err := c.apiURL(n); err == nil {
				if b, err := c.renderKubeconfig(); err == nil && answers(ctx, b) {
					return u, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("server %s did not come up within %s", n.Name, readyTimeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// alive fails when the node's skiff process is gone, with the end of its
// log.
func (c *Cluster) alive(n *Node) error {
	if n.running() {
		return nil
	}
	b, _ := os.ReadFile(c.logPath(n))
	return fmt.Errorf("node %s exited; the end of its log (%s):\n%s", n.Name, c.logPath(n), tail(string(b), 15))
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// apiURL is the apiserver of server n on its address, with the port the
// server chose.
func (c *Cluster) apiURL(n *Node) (string, error) {
	kc, err := clientcmd.LoadFromFile(c.serverKubeconfig(n))
	if err != nil {
		return "", fmt.Errorf("read the kubeconfig of %s: %w", n.Name, err)
	}
	for _, cl := range kc.Clusters {
		u, err := url.Parse(cl.Server)
		if err != nil {
			return "", err
		}
		port := u.Port()
		if port == "" {
			port = "443"
		}
		return "https://" + net.JoinHostPort(n.IP, port), nil
	}
	return "", fmt.Errorf("the kubeconfig of %s names no cluster", n.Name)
}

// renderKubeconfig is the first server's admin kubeconfig, pointed at its
// address on the cluster's network and named after the cluster, so that
// several clusters' files merge.
func (c *Cluster) renderKubeconfig() ([]byte, error) {
	first := c.servers()[0]
	kc, err := clientcmd.LoadFromFile(c.serverKubeconfig(first))
	if err != nil {
		return nil, fmt.Errorf("read the kubeconfig of %s (has the cluster ever started?): %w", first.Name, err)
	}
	apiURL, err := c.apiURL(first)
	if err != nil {
		return nil, err
	}
	ctxName := kc.CurrentContext
	kctx, ok := kc.Contexts[ctxName]
	if !ok {
		return nil, fmt.Errorf("the kubeconfig of %s has no current context", first.Name)
	}
	cluster, user := kc.Clusters[kctx.Cluster], kc.AuthInfos[kctx.AuthInfo]
	if cluster == nil || user == nil {
		return nil, fmt.Errorf("the kubeconfig of %s is incomplete", first.Name)
	}
	name := "skiff-" + c.Name
	cluster.Server = apiURL
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = cluster
	out.AuthInfos[name] = user
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	out.CurrentContext = name
	return clientcmd.Write(*out)
}

func (c *Cluster) writeKubeconfig() error {
	b, err := c.renderKubeconfig()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.Kubeconfig), 0o700); err != nil {
		return fmt.Errorf("create the kubeconfig's dir: %w", err)
	}
	if err := fileutil.WriteAtomic(c.Kubeconfig, b, 0o600); err != nil {
		return fmt.Errorf("write the kubeconfig: %w", err)
	}
	return nil
}

// start brings back the nodes that are not running: the servers at once
// (a server of an etcd cluster waits for a quorum), then the agents.
func (c *Cluster) start(ctx context.Context, out io.Writer) error {
	began := time.Now()
	var stopped []*Node
	for _, n := range c.nodePointers() {
		if !n.running() {
			stopped = append(stopped, n)
		}
	}
	if len(stopped) == 0 {
		return fmt.Errorf("cluster %s is already running", c.Name)
	}
	if _, err := os.Stat(c.Binary); err != nil {
		return fmt.Errorf("the skiff binary the cluster was made with is gone (%v); skiff cluster delete %s and create it again", err, c.Name)
	}
	if err := c.setUpNetwork(); err != nil {
		return err
	}
	for _, role := range []string{RoleServer, RoleAgent} {
		for _, n := range stopped {
			if n.Role != role {
				continue
			}
			if err := c.removeLeftovers(n); err != nil {
				return err
			}
			if err := c.launch(n); err != nil {
				return err
			}
		}
		if role == RoleServer {
			if _, err := c.waitServerUp(ctx, c.servers()[0]); err != nil {
				return err
			}
		}
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	if err := c.waitReady(ctx, readyTimeout, began, stopped); err != nil {
		return err
	}
	fmt.Fprintf(out, "cluster %s ready in %s: %d nodes started; kubeconfig at %s\n", c.Name, time.Since(began).Round(100*time.Millisecond), len(stopped), c.Kubeconfig)
	return nil
}

// removeLeftovers kills what a node that died left running, so that a new
// start does not meet an old containerd.
func (c *Cluster) removeLeftovers(n *Node) error {
	return c.killNode(n)
}

func (c *Cluster) delete(out io.Writer) error {
	var errs []error
	if err := c.stopNodes(c.nodePointers(), 5*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := c.removeNetwork(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete cluster %s: %w; its files are kept in %s", c.Name, errors.Join(errs...), Dir(c.Name))
	}
	if b, err := os.ReadFile(c.Kubeconfig); err == nil && strings.Contains(string(b), "skiff-"+c.Name) {
		if err := os.Remove(c.Kubeconfig); err != nil {
			return fmt.Errorf("remove the kubeconfig: %w", err)
		}
	}
	if err := os.RemoveAll(Dir(c.Name)); err != nil {
		return fmt.Errorf("remove the files of cluster %s: %w", c.Name, err)
	}
	if c.MadeNetnsDir {
		removeNetnsDirIfUnused()
	}
	fmt.Fprintf(out, "cluster %s deleted\n", c.Name)
	return nil
}

// load imports image archives into every node's containerd, pinned as the
// node's images folder pins them.
func (c *Cluster) load(ctx context.Context, archives []string, out io.Writer) error {
	if len(archives) == 0 {
		return errors.New("name the image archives to load, e.g. skiff cluster load dev app.tar")
	}
	for _, n := range c.nodePointers() {
		if !n.running() {
			return fmt.Errorf("node %s is not running; skiff cluster start %s first", n.Name, c.Name)
		}
	}
	for _, a := range archives {
		for _, n := range c.nodePointers() {
			// The node's containerd socket, in the node's mount namespace.
			address := fmt.Sprintf("/proc/%d/root%s", n.PID, layout.ContainerdSocket)
			names, err := containerd.ImportFile(ctx, address, a, containerd.WithPinned())
			if err != nil {
				return fmt.Errorf("load %s into node %s: %w", a, n.Name, err)
			}
			fmt.Fprintf(out, "%s: %s\n", n.Name, strings.Join(names, ", "))
		}
	}
	return nil
}

func list(out io.Writer) error {
	clusters, err := all()
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSERVERS\tAGENTS\tRUNNING\tNETWORK\tKUBECONFIG")
	for _, c := range clusters {
		running := 0
		for i := range c.Nodes {
			if c.Nodes[i].running() {
				running++
			}
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d/%d\t%s\t%s\n", c.Name, len(c.servers()), len(c.agents()), running, len(c.Nodes), c.Subnet, c.Kubeconfig)
	}
	return w.Flush()
}

// archivesIn lists the image archives of dir ("" for none).
func archivesIn(dir string) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--image-dir: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && containerd.IsArchive(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--image-dir %s holds no image archive (*.tar, *.tar.gz, *.tar.zst)", dir)
	}
	return out, nil
}

// linkOrCopy hard-links src to dst, or copies it across filesystems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".part"
	outF, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(outF, in); err != nil {
		outF.Close()
		return err
	}
	if err := outF.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// lockClusters takes the machine's lock over the clusters' networks; the
// returned function releases it and may be called more than once.
func lockClusters() (func(), error) {
	f, err := os.OpenFile(filepath.Join(config.ClustersDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the clusters' lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("take the clusters' lock: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}

// removeNetnsDirIfUnused undoes what the first `ip netns add` did to a host
// that had no /run/netns: a directory mounted on itself.
func removeNetnsDirIfUnused() {
	if entries, err := os.ReadDir(netnsDir); err != nil || len(entries) > 0 {
		return
	}
	_ = unix.Unmount(netnsDir, unix.MNT_DETACH)
	_ = os.Remove(netnsDir)
}
