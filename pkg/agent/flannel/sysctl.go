package flannel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// procSys is a variable so that tests can point it at a temporary tree.
var procSys = "/proc/sys"

const (
	sysctlIPForward      = "net/ipv4/ip_forward"
	sysctlIPv6Forward    = "net/ipv6/conf/all/forwarding"
	sysctlBridgeNFCall   = "net/bridge/bridge-nf-call-iptables"
	sysctlBridgeNFCall6  = "net/bridge/bridge-nf-call-ip6tables"
	errBrNetfilterAdvice = "the kernel lacks the br_netfilter feature (CONFIG_BRIDGE_NETFILTER), which pod-to-service traffic across the bridge needs; run `skiff check-config`"
)

// EnsureSysctls turns on IPv4 forwarding (pods are routed through the host)
// and bridge-nf-call-iptables (so that packets between pods on the cni0
// bridge go through kube-proxy's service rules). It fails with a clear
// message when the kernel has no br_netfilter.
func EnsureSysctls() error {
	if err := setSysctl(sysctlIPForward, "1"); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	if err := setSysctl(sysctlBridgeNFCall, "1"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New(errBrNetfilterAdvice)
		}
		return fmt.Errorf("enable bridge-nf-call-iptables: %w", err)
	}
	return nil
}

// ensureIPv6Sysctls is only applied when the cluster has IPv6 pod addresses:
// turning on IPv6 forwarding makes the kernel ignore router advertisements
// on hosts that rely on them, so it is not done for IPv4-only clusters.
func ensureIPv6Sysctls() error {
	if err := setSysctl(sysctlIPv6Forward, "1"); err != nil {
		return fmt.Errorf("enable IPv6 forwarding: %w", err)
	}
	if err := setSysctl(sysctlBridgeNFCall6, "1"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New(errBrNetfilterAdvice)
		}
		return fmt.Errorf("enable bridge-nf-call-ip6tables: %w", err)
	}
	return nil
}

// setSysctl writes only when the value differs, so that a node whose
// /proc/sys is read-only but already configured (a container) still starts.
func setSysctl(name, value string) error {
	path := filepath.Join(procSys, name)
	cur, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value+"\n"), 0o644); err != nil {
		return err
	}
	return nil
}
