// Command skiff-coredns is CoreDNS built with only the plugins a cluster's
// DNS service needs. It is packed into the node's CoreDNS system image, so
// cluster DNS runs with no image pulled. It is its own module: CoreDNS's
// dependency versions must not move those of the embedded Kubernetes.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	"github.com/skiff-io/skiff/pkg/startpages"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// plugins are the directives this build understands, in CoreDNS's own
// execution order (core/dnsserver/zdirectives.go of the pinned release).
var plugins = map[string]bool{
	"reload": true, "ready": true, "health": true, "prometheus": true,
	"errors": true, "log": true, "loadbalance": true, "cache": true,
	"hosts": true, "kubernetes": true, "loop": true, "forward": true,
}

func main() {
	// Keep upstream's order and drop what is not compiled in, so a Corefile
	// naming another plugin fails with CoreDNS's own "unknown directive".
	var directives []string
	for _, d := range dnsserver.Directives {
		if plugins[d] {
			directives = append(directives, d)
		}
	}
	dnsserver.Directives = directives
	startpages.ReleaseLater()
	coremain.Run()
}
