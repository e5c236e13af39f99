// Package clusterips rejects new connections to the Service CIDRs that
// kube-proxy did not send on to a Service's endpoints: a ClusterIP's
// undefined port, or an address no Service holds. kube-proxy's iptables
// mode leaves such packets to the node's routes, which send them out of
// the node to whatever network is there, and that network may answer;
// its nftables mode rejects them, and so does this guard for the
// iptables mode, with one chain of its own in the filter table.
package clusterips

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/sirupsen/logrus"
)

const (
	// Chain is the guard's chain in the filter table. The name carries
	// "skiff", by which killall finds the rules it removes.
	Chain = "SKIFF-CLUSTER-IPS"
	// DefaultResync is how often the rules are checked and put back if
	// something removed them.
	DefaultResync = 10 * time.Second
)

// Guard is the node component that keeps the guard's rules in place.
type Guard struct {
	// ServiceCIDRs is the cluster's comma-separated Service ranges.
	ServiceCIDRs string
	Resync       time.Duration
}

func (g *Guard) Name() string { return "cluster-ip-guard" }

// Start puts the rules in place and keeps them there until ctx ends. The
// rules stay after a stop, as kube-proxy's do, so that the node's pods are
// guarded while skiff restarts.
func (g *Guard) Start(ctx context.Context) (<-chan error, error) {
	tables, err := g.tables()
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if err := t.ensure(); err != nil {
			return nil, err
		}
	}
	resync := g.Resync
	if resync <= 0 {
		resync = DefaultResync
	}
	done := make(chan error)
	go func() {
		defer close(done)
		tick := time.NewTicker(resync)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				for _, t := range tables {
					if err := t.ensure(); err != nil {
						logrus.Warnf("cluster-ip-guard: %v", err)
					}
				}
			}
		}
	}()
	return done, nil
}

// table is the guard's rules for one address family.
type table struct {
	ipt   *iptables.IPTables
	cidrs []netip.Prefix
}

func (g *Guard) tables() ([]*table, error) {
	var v4, v6 []netip.Prefix
	for _, s := range strings.Split(g.ServiceCIDRs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := parseRange(s)
		if err != nil {
			return nil, err
		}
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	var out []*table
	for _, f := range []struct {
		proto iptables.Protocol
		cidrs []netip.Prefix
	}{{iptables.ProtocolIPv4, v4}, {iptables.ProtocolIPv6, v6}} {
		if len(f.cidrs) == 0 {
			continue
		}
		ipt, err := iptables.NewWithProtocol(f.proto)
		if err != nil {
			return nil, fmt.Errorf("cluster-ip-guard: %w", err)
		}
		out = append(out, &table{ipt: ipt, cidrs: f.cidrs})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster-ip-guard: no service CIDR in %q", g.ServiceCIDRs)
	}
	return out, nil
}

// parseRange parses one Service CIDR, as the range it names.
func parseRange(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cluster-ip-guard: service CIDR %q: %w", s, err)
	}
	return p.Masked(), nil
}

// jumpRule sends new connections through the guard's chain. Connections
// kube-proxy translated already carry an endpoint's address here, since
// the filter hooks come after the nat ones.
var jumpRule = []string{"-m", "conntrack", "--ctstate", "NEW",
	"-m", "comment", "--comment", "skiff: new connections to the Service CIDRs that kube-proxy did not translate", "-j", Chain}

// rejectRules are the chain's rules: one reject for each range.
func rejectRules(cidrs []netip.Prefix) [][]string {
	var rules [][]string
	for _, c := range cidrs {
		rules = append(rules, []string{"-d", c.String(),
			"-m", "comment", "--comment", "skiff: no Service has this ClusterIP and port", "-j", "REJECT"})
	}
	return rules
}

// ensure makes the chain hold exactly the reject rules and the jumps to it
// exist, at the top of FORWARD (ahead of the pod network's accept rules)
// and OUTPUT.
func (t *table) ensure() error {
	want := rejectRules(t.cidrs)
	ok, err := t.chainHolds(want)
	if err != nil {
		return err
	}
	if !ok {
		// ClearChain creates the chain or empties it.
		if err := t.ipt.ClearChain("filter", Chain); err != nil {
			return fmt.Errorf("cluster-ip-guard: create %s: %w", Chain, err)
		}
		for _, r := range want {
			if err := t.ipt.Append("filter", Chain, r...); err != nil {
				return fmt.Errorf("cluster-ip-guard: add to %s: %w", Chain, err)
			}
		}
	}
	for _, from := range []string{"FORWARD", "OUTPUT"} {
		exists, err := t.ipt.Exists("filter", from, jumpRule...)
		if err != nil {
			return fmt.Errorf("cluster-ip-guard: check %s: %w", from, err)
		}
		if !exists {
			if err := t.ipt.Insert("filter", from, 1, jumpRule...); err != nil {
				return fmt.Errorf("cluster-ip-guard: add the jump from %s: %w", from, err)
			}
		}
	}
	return nil
}

// chainHolds reports whether the chain exists with exactly want in it.
func (t *table) chainHolds(want [][]string) (bool, error) {
	exists, err := t.ipt.ChainExists("filter", Chain)
	if err != nil || !exists {
		return false, err
	}
	rules, err := t.ipt.List("filter", Chain)
	if err != nil {
		return false, fmt.Errorf("cluster-ip-guard: list %s: %w", Chain, err)
	}
	if len(rules) != len(want)+1 { // List's first line is the chain's -N
		return false, nil
	}
	for _, r := range want {
		if ok, err := t.ipt.Exists("filter", Chain, r...); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}
