// Command etcd is upstream's etcd server, from the go.etcd.io/etcd/server
// module at the version skiff embeds, for the etcd image the Aggregator
// conformance spec runs beside the sample apiserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
