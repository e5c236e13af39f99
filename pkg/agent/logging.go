package agent

import (
	"flag"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

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
