package cluster

import (
	"fmt"
	"os"
	"sort"

	"sigs.k8s.io/yaml"
)

// File is the --config cluster file: the nodes, in the spirit of kind's
// cluster config, for what the count flags do not say.
//
//	nodes:
//	  - role: server
//	    name: cp
//	    labels: {tier: control}
//	  - role: agent
//	    taints: ["dedicated=ci:NoSchedule"]
//	    args: ["--kubelet-arg=max-pods=50"]
type File struct {
	Nodes []FileNode `json:"nodes"`
}

// FileNode is one node of the cluster file.
type FileNode struct {
	Role   string            `json:"role"`
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Taints []string          `json:"taints,omitempty"`
	Args   []string          `json:"args,omitempty"`
}

func readFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the cluster file: %w", err)
	}
	var f File
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("cluster file %s: %w", path, err)
	}
	if len(f.Nodes) == 0 {
		return nil, fmt.Errorf("cluster file %s lists no nodes; give at least one with role: server", path)
	}
	for i, n := range f.Nodes {
		if n.Role != RoleServer && n.Role != RoleAgent {
			return nil, fmt.Errorf("cluster file %s: node %d has role %q; use server or agent", path, i+1, n.Role)
		}
	}
	return &f, nil
}

// planNodes names the nodes (servers first, in the order given) from the
// cluster file, or from the counts when there is none.
func planNodes(name string, servers, agents int, f *File) ([]Node, error) {
	var specs []FileNode
	if f != nil {
		for _, role := range []string{RoleServer, RoleAgent} {
			for _, n := range f.Nodes {
				if n.Role == role {
					specs = append(specs, n)
				}
			}
		}
	} else {
		for i := 0; i < servers; i++ {
			specs = append(specs, FileNode{Role: RoleServer})
		}
		for i := 0; i < agents; i++ {
			specs = append(specs, FileNode{Role: RoleAgent})
		}
	}
	if len(specs) == 0 || specs[0].Role != RoleServer {
		return nil, fmt.Errorf("a cluster needs at least one server")
	}
	if len(specs) > maxNodes {
		return nil, fmt.Errorf("%d nodes are more than one cluster's network holds (%d)", len(specs), maxNodes)
	}
	count := map[string]int{}
	seen := map[string]bool{}
	var nodes []Node
	for _, s := range specs {
		count[s.Role]++
		n := Node{Name: s.Name, Role: s.Role, Taints: s.Taints, Args: s.Args}
		if n.Name == "" {
			n.Name = fmt.Sprintf("%s-%s-%d", name, s.Role, count[s.Role])
		}
		if !namePattern.MatchString(n.Name) || len(n.Name) > 63 {
			return nil, fmt.Errorf("node name %q is not valid: use lower-case letters, digits and dashes", n.Name)
		}
		if seen[n.Name] {
			return nil, fmt.Errorf("two nodes are named %s", n.Name)
		}
		seen[n.Name] = true
		keys := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.Labels = append(n.Labels, k+"="+s.Labels[k])
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}
