package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/robfig/cron/v3"

	"github.com/skiff-io/skiff/manifests"
)

// Limits the API server puts on the service range: its allocator keeps a
// bitmap per range, so it refuses ranges with more than 20 host bits.
const (
	minServicePrefixV4 = 12
	minServicePrefixV6 = 108
)

// Validate checks every field a user can set and returns every problem
// found, each a sentence that names the flag, the cause and the fix (the
// CLI prints them on one line), so a user fixes them all in one go.
func (s *Server) Validate() error {
	checks := []func() error{
		s.validateDataDir,
		s.validatePort,
		s.validateAddresses,
		s.validateTLSSANs,
		s.validateNetworks,
		s.validateClusterDomain,
		s.validateKubeconfigMode,
		s.ValidateNode,
		s.validateAgentToken,
		s.validateDatastore,
		s.validateEtcdSnapshots,
		s.validateDisable,
		s.validateLocalStoragePath,
		s.validateSystemRegistry,
	}
	var errs []error
	for _, check := range checks {
		if err := check(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) validateSystemRegistry() error {
	r := s.SystemDefaultRegistry
	if r == "" {
		return nil
	}
	u, err := url.Parse("https://" + r)
	if err != nil || u.Host != r || u.Hostname() == "" || strings.ContainsAny(r, "/@ \t?#") {
		return fmt.Errorf("invalid --system-default-registry %q: give a registry host like registry.example or registry.example:5000, without a scheme or path", r)
	}
	return nil
}

func (s *Server) validateAgentToken() error {
	if s.AgentToken != "" && (strings.ContainsAny(s.AgentToken, ": \t\n") || len(s.AgentToken) < 8) {
		return fmt.Errorf("invalid --agent-token: use a secret of at least 8 characters without ':' or spaces")
	}
	return nil
}

func (s *Server) validateDatastore() error {
	var errs []error
	if s.ClusterInit && s.ServerURL != "" {
		errs = append(errs, errors.New("--cluster-init and --server both given: --cluster-init starts a new etcd cluster, --server joins a running one; pass only one"))
	}
	if s.DatastoreEndpoint != "" && (s.ClusterInit || s.ServerURL != "") {
		errs = append(errs, errors.New("--datastore-endpoint cannot be combined with --cluster-init or --server: servers sharing an external datastore find each other through it; drop --cluster-init and --server, or drop --datastore-endpoint to use embedded etcd"))
	}
	if s.ServerURL != "" {
		if err := validateServerURL(s.ServerURL); err != nil {
			errs = append(errs, err)
		}
		if s.Token == "" {
			errs = append(errs, errors.New("--server needs the cluster's token: pass --token with the output of \"skiff token\" on that server"))
		}
	}
	if (s.DatastoreCAFile != "" || s.DatastoreCertFile != "" || s.DatastoreKeyFile != "") && s.DatastoreEndpoint == "" {
		errs = append(errs, errors.New("--datastore-cafile, --datastore-certfile and --datastore-keyfile are for an external database: pass --datastore-endpoint too"))
	}
	if (s.DatastoreCertFile == "") != (s.DatastoreKeyFile == "") {
		errs = append(errs, errors.New("--datastore-certfile and --datastore-keyfile go together: pass both or neither"))
	}
	for _, f := range []struct{ flag, path string }{
		{"--datastore-cafile", s.DatastoreCAFile},
		{"--datastore-certfile", s.DatastoreCertFile},
		{"--datastore-keyfile", s.DatastoreKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			errs = append(errs, fmt.Errorf("%s %s cannot be read (%v); give the path of an existing PEM file", f.flag, f.path, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Server) validateEtcdSnapshots() error {
	var errs []error
	if s.EtcdSnapshotScheduleCron != "" {
		if _, err := parseCron(s.EtcdSnapshotScheduleCron); err != nil {
			errs = append(errs, fmt.Errorf("invalid --etcd-snapshot-schedule-cron %q (%v); give five fields, minute hour day-of-month month day-of-week, e.g. %q for every twelve hours", s.EtcdSnapshotScheduleCron, err, DefaultEtcdSnapshotCron))
		}
	}
	if s.EtcdSnapshotRetention < 0 {
		errs = append(errs, fmt.Errorf("invalid --etcd-snapshot-retention %d; give how many snapshots each server keeps, e.g. %d, or 0 to keep them all", s.EtcdSnapshotRetention, DefaultEtcdSnapshotRetention))
	}
	if s.EtcdSnapshotDir != "" && !filepath.IsAbs(s.EtcdSnapshotDir) {
		errs = append(errs, fmt.Errorf("invalid --etcd-snapshot-dir %q: relative path; use an absolute path such as /var/backups/skiff", s.EtcdSnapshotDir))
	}
	if s.ClusterResetRestorePath != "" {
		if !s.ClusterReset {
			errs = append(errs, errors.New("--cluster-reset-restore-path needs --cluster-reset: pass both to restore the snapshot into a new one-member cluster"))
		}
		if st, err := os.Stat(s.ClusterResetRestorePath); err != nil || !st.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("--cluster-reset-restore-path %s is not a readable file; give the path of an etcd snapshot (\"skiff etcd-snapshot ls\" lists them)", s.ClusterResetRestorePath))
		}
	}
	if s.ClusterReset && s.DatastoreEndpoint != "" {
		errs = append(errs, errors.New("--cluster-reset is for embedded etcd, and --datastore-endpoint names an external datastore; restore that database with its own tools instead"))
	}
	return errors.Join(errs...)
}

// parseCron parses a standard five-field cron spec (or a descriptor such
// as @daily), in the host's time zone.
func parseCron(spec string) (cron.Schedule, error) { return cron.ParseStandard(spec) }

// disableName is what --disable takes: a file name of the manifests
// folder without its extension (or an Addon name).
var disableName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`)

func (s *Server) validateLocalStoragePath() error {
	if s.LocalStoragePath == "" {
		return nil
	}
	if !filepath.IsAbs(s.LocalStoragePath) || filepath.Clean(s.LocalStoragePath) == "/" {
		return fmt.Errorf("--default-local-storage-path %q is not an absolute directory below /; give one such as /var/lib/skiff/storage", s.LocalStoragePath)
	}
	return nil
}

func (s *Server) validateDisable() error {
	for _, d := range s.Disable {
		if !disableName.MatchString(d) {
			return fmt.Errorf("invalid --disable value %q: give the name of a bundled addon (%s) or of a file in the manifests folder without its extension, e.g. traefik for traefik.yaml", d, strings.Join(manifests.Addons(), ", "))
		}
	}
	return nil
}

// parseNodeIPs parses a --node-ip (or --node-external-ip) list that
// validateIPPair accepted.
func parseNodeIPs(list string) []netip.Addr {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	var ips []netip.Addr
	for _, part := range strings.Split(list, ",") {
		if addr, ok := parseIP(strings.TrimSpace(part)); ok {
			ips = append(ips, addr)
		}
	}
	return ips
}

func (s *Server) validateDataDir() error { return ValidateDataDir(s.DataDir) }

// ValidateDataDir checks a --data-dir: skiff needs an absolute path.
func ValidateDataDir(dir string) error {
	switch {
	case dir == "":
		return fmt.Errorf("invalid --data-dir: empty; use an absolute path such as %s", DefaultDataDir)
	case !filepath.IsAbs(dir):
		return fmt.Errorf("invalid --data-dir %q: relative path; use an absolute path such as %s", dir, DefaultDataDir)
	}
	return nil
}

func (s *Server) validatePort() error {
	if s.HTTPSPort < 1 || s.HTTPSPort > 65535 {
		return fmt.Errorf("invalid --https-listen-port %d: out of range; use a port between 1 and 65535, e.g. %d", s.HTTPSPort, DefaultHTTPSPort)
	}
	return nil
}

func (s *Server) validateAddresses() error {
	if _, ok := parseIP(s.BindAddress); !ok {
		return fmt.Errorf("invalid --bind-address %q: not an IP address; use a form like %s or 192.168.1.10", s.BindAddress, DefaultBindAddress)
	}
	if s.AdvertiseAddress != "" {
		if _, ok := parseIP(s.AdvertiseAddress); !ok {
			return fmt.Errorf("invalid --advertise-address %q: not an IP address; use a form like 192.168.1.10", s.AdvertiseAddress)
		}
	}
	if s.NodeIP != "" {
		if err := validateNodeIPs(s.NodeIP); err != nil {
			return err
		}
	}
	return nil
}

func validateNodeIPs(list string) error { return validateIPPair("--node-ip", list) }

// validateIPPair checks a flag that takes one address, or an IPv4 and an
// IPv6 one separated by a comma (--node-ip, --node-external-ip).
func validateIPPair(flag, list string) error {
	parts := strings.Split(list, ",")
	if len(parts) > 2 {
		return fmt.Errorf("invalid %s %q: more than two addresses; give one IPv4 address, one IPv6 address, or one of each separated by a comma", flag, list)
	}
	var seenV4, seenV6 bool
	for _, part := range parts {
		part = strings.TrimSpace(part)
		addr, ok := parseIP(part)
		if !ok {
			return fmt.Errorf("invalid %s %q: %q is not an IP address; use a form like 192.168.1.10 or 192.168.1.10,fd00::10", flag, list, part)
		}
		if addr.Is4() {
			if seenV4 {
				return fmt.Errorf("invalid %s %q: two IPv4 addresses; give at most one IPv4 and one IPv6 address", flag, list)
			}
			seenV4 = true
		} else {
			if seenV6 {
				return fmt.Errorf("invalid %s %q: two IPv6 addresses; give at most one IPv4 and one IPv6 address", flag, list)
			}
			seenV6 = true
		}
	}
	return nil
}

func (s *Server) validateTLSSANs() error {
	for _, san := range s.TLSSANs {
		switch {
		case san == "":
			return fmt.Errorf("invalid --tls-san \"\": empty; give an IP address or DNS name")
		case strings.IndexFunc(san, unicode.IsSpace) >= 0:
			return fmt.Errorf("invalid --tls-san %q: contains whitespace; give one IP address or DNS name per --tls-san", san)
		}
		if _, ok := parseIP(san); ok {
			continue
		}
		if !isDNSName(strings.TrimPrefix(san, "*."), false) {
			return fmt.Errorf("invalid --tls-san %q: neither an IP address nor a DNS name; use a form like 192.168.1.10 or skiff.example.com", san)
		}
	}
	return nil
}

func (s *Server) validateNetworks() error {
	clusterNets, err := parseCIDRList("--cluster-cidr", s.ClusterCIDR, DefaultClusterCIDR)
	if err != nil {
		return err
	}
	serviceNets, err := parseCIDRList("--service-cidr", s.ServiceCIDR, DefaultServiceCIDR)
	if err != nil {
		return err
	}
	for _, svc := range serviceNets {
		if svc.Addr().Is4() && svc.Bits() < minServicePrefixV4 {
			return fmt.Errorf("invalid --service-cidr %q: %s is too large (the API server allows at most 20 host bits); use a prefix of /%d or longer, e.g. %s",
				s.ServiceCIDR, svc, minServicePrefixV4, DefaultServiceCIDR)
		}
		if svc.Addr().Is6() && svc.Bits() < minServicePrefixV6 {
			return fmt.Errorf("invalid --service-cidr %q: %s is too large (the API server allows at most 20 host bits); use a prefix of /%d or longer, e.g. fd00:43::/112",
				s.ServiceCIDR, svc, minServicePrefixV6)
		}
		// The range has to fit the network address, the kubernetes service,
		// the DNS service and, for IPv4, the broadcast address.
		if svc.Addr().BitLen()-svc.Bits() < 2 {
			return fmt.Errorf("invalid --service-cidr %q: %s is too small for the kubernetes and DNS services; use a larger range such as %s", s.ServiceCIDR, svc, DefaultServiceCIDR)
		}
	}
	for _, cl := range clusterNets {
		for _, svc := range serviceNets {
			if cl.Overlaps(svc) {
				return fmt.Errorf("--cluster-cidr %s overlaps --service-cidr %s; choose ranges that do not overlap, e.g. %s and %s",
					cl, svc, DefaultClusterCIDR, DefaultServiceCIDR)
			}
		}
	}
	return s.validateClusterDNS(serviceNets)
}

func (s *Server) validateClusterDNS(serviceNets []netip.Prefix) error {
	dns, ok := parseIP(s.ClusterDNS)
	if !ok {
		return fmt.Errorf("invalid --cluster-dns %q: not an IP address; use an address inside --service-cidr, e.g. %s", s.ClusterDNS, suggestDNS(serviceNets[0]))
	}
	for _, svc := range serviceNets {
		if !svc.Contains(dns) {
			continue
		}
		first, _ := firstUsable(svc)
		switch {
		case dns == first:
			return fmt.Errorf("invalid --cluster-dns %q: it is the first address of --service-cidr %s, which the kubernetes API service takes; use another, e.g. %s",
				s.ClusterDNS, svc, suggestDNS(svc))
		case dns == svc.Addr():
			return fmt.Errorf("invalid --cluster-dns %q: it is the network address of --service-cidr %s, which cannot be assigned to a service; use e.g. %s",
				s.ClusterDNS, svc, suggestDNS(svc))
		case dns.Is4() && dns == lastAddr(svc):
			return fmt.Errorf("invalid --cluster-dns %q: it is the broadcast address of --service-cidr %s, which cannot be assigned to a service; use e.g. %s",
				s.ClusterDNS, svc, suggestDNS(svc))
		}
		return nil
	}
	return fmt.Errorf("invalid --cluster-dns %q: not inside --service-cidr %s; use an address in that range, e.g. %s",
		s.ClusterDNS, s.ServiceCIDR, suggestDNS(serviceNets[0]))
}

func (s *Server) validateClusterDomain() error {
	if !isDNSName(s.ClusterDomain, true) {
		return fmt.Errorf("invalid --cluster-domain %q: not a DNS domain (lowercase letters, digits, '-' and '.', no trailing dot); use a form like %s",
			s.ClusterDomain, DefaultClusterDomain)
	}
	return nil
}

func (s *Server) validateKubeconfigMode() error {
	if _, err := parseFileMode(s.KubeconfigMode); err != nil {
		return fmt.Errorf("invalid --write-kubeconfig-mode %q: %w", s.KubeconfigMode, err)
	}
	return nil
}

func parseFileMode(text string) (os.FileMode, error) {
	if text == "" {
		return 0, fmt.Errorf("empty; use an octal mode like %s or 644", DefaultKubeconfigMode)
	}
	v, err := strconv.ParseUint(text, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("not an octal file mode; use a form like %s or 644", DefaultKubeconfigMode)
	}
	if v > 0o777 {
		return 0, fmt.Errorf("only permission bits are allowed; use a mode no larger than 0777, e.g. %s", DefaultKubeconfigMode)
	}
	return os.FileMode(v), nil
}

// parseCIDRList parses a single range or a dual-stack pair. Ranges with host
// bits set are rejected rather than masked, because a user who wrote
// 10.42.0.1/16 most likely meant something else and should see the fix.
func parseCIDRList(flagName, list, example string) ([]netip.Prefix, error) {
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("invalid %s: empty; use a form like %s", flagName, example)
	}
	parts := strings.Split(list, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("invalid %s %q: more than two ranges; give one IPv4 range, one IPv6 range, or one of each separated by a comma", flagName, list)
	}
	var prefixes []netip.Prefix
	var seenV4, seenV6 bool
	for _, part := range parts {
		part = strings.TrimSpace(part)
		p, err := netip.ParsePrefix(part)
		if err != nil || p.Addr().Zone() != "" {
			if len(parts) == 1 {
				return nil, fmt.Errorf("invalid %s %q: not a CIDR; use a form like %s", flagName, list, example)
			}
			return nil, fmt.Errorf("invalid %s %q: %q is not a CIDR; use a form like %s", flagName, list, part, example)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("invalid %s %q: %s is an IPv4-mapped IPv6 range; write IPv4 ranges in dotted form, e.g. %s", flagName, list, part, example)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("invalid %s %q: %s has host bits set; use %s", flagName, list, part, p.Masked())
		}
		if p.Addr().Is4() {
			if seenV4 {
				return nil, fmt.Errorf("invalid %s %q: two IPv4 ranges; give at most one IPv4 and one IPv6 range", flagName, list)
			}
			seenV4 = true
		} else {
			if seenV6 {
				return nil, fmt.Errorf("invalid %s %q: two IPv6 ranges; give at most one IPv4 and one IPv6 range", flagName, list)
			}
			seenV6 = true
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, nil
}

// parseIP accepts plain IPv4 and IPv6 addresses only: zones mean nothing to
// other hosts, and IPv4-mapped forms are folded to IPv4 so that family checks
// agree with what the kernel will use.
func parseIP(s string) (netip.Addr, bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

func firstUsable(p netip.Prefix) (netip.Addr, bool) {
	next := p.Addr().Next()
	if !next.IsValid() || !p.Contains(next) {
		return netip.Addr{}, false
	}
	return next, true
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	addr, _ := netip.AddrFromSlice(b)
	return addr
}

// suggestDNS proposes the address skiff uses by default (the tenth) when the
// range is big enough, so suggestions match what users see in examples.
func suggestDNS(p netip.Prefix) netip.Addr {
	addr := p.Addr()
	for i := 0; i < 10; i++ {
		next := addr.Next()
		if !next.IsValid() || !p.Contains(next) || (next.Is4() && next == lastAddr(p)) {
			break
		}
		addr = next
	}
	return addr
}

// isDNSName reports whether name is a dotted sequence of RFC 1123 labels.
// A final all-digit label is refused so that typos such as 10.0.0.256 are not
// mistaken for host names.
func isDNSName(name string, lowercaseOnly bool) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' ||
				!lowercaseOnly && r >= 'A' && r <= 'Z'
			if !ok {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}
