package config

import (
	"io"
	"path/filepath"
)

// ClustersDir holds the state of the clusters `skiff cluster` runs on this
// machine, one directory per cluster.
var ClustersDir = filepath.Join(DefaultDataDir, "clusters")

// ClusterNodeCommand is skiff's hidden sub-command that prepares a cluster
// node's namespaces from the inside and then becomes the node's process.
const ClusterNodeCommand = "cluster-node"

// ClusterRequest is one `skiff cluster` invocation.
type ClusterRequest struct {
	Op   string // create, list, kubeconfig, stop, start, delete or load
	Name string

	// create
	Servers, Agents int
	ImageDir        string
	ConfigFile      string   // the --config cluster YAML
	Kubeconfig      string   // where the host's kubeconfig goes ("" = the default)
	ServerArgs      []string // flags after "--", given to every server

	// load
	Archives []string

	Out io.Writer
}
