package agent

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/klog/v2"
)

// NodeName returns the configured node name, or the hostname, lowercased as
// Kubernetes requires.
func NodeName(configured string) (string, error) {
	if configured != "" {
		return strings.ToLower(configured), nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read hostname: %w; pass --node-name", err)
	}
	return strings.ToLower(host), nil
}

// NodeIPs returns the configured addresses, or the address of the interface
// holding the default route (read from the routing table; nothing is sent).
// A machine with no route at all, a laptop offline, still gets a working
// loopback cluster.
func NodeIPs(configured []net.IP) []net.IP {
	if len(configured) > 0 {
		return configured
	}
	ip, err := utilnet.ChooseHostInterface()
	if err != nil {
		logrus.Warnf("no default route to pick the node IP from (%v); using 127.0.0.1, pass --node-ip to choose", err)
		return []net.IP{net.ParseIP("127.0.0.1")}
	}
	return []net.IP{ip}
}

// SetupLogging points klog (used by the Kubernetes components) and logrus
// (used by kine, flannel glue and skiff) at the requested verbosity.
func SetupLogging(debug bool) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	v := "0"
	if debug {
		v = "2"
		logrus.SetLevel(logrus.DebugLevel)
	}
	_ = fs.Set("v", v)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
}
