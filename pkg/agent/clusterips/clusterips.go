// Package clusterips stops new connections to the Service CIDRs that
// kube-proxy did not send on to a Service's endpoints: a ClusterIP's
// undefined port, or an address no Service holds. kube-proxy's iptables
// mode leaves such packets to the node's routes, which send them out of
// the node to whatever network is there, and that network may answer;
// its nftables mode rejects or drops them, and so does this guard for the
// iptables mode: the node's own connections are rejected (filter OUTPUT),
// the pods' dropped once kube-proxy's NAT is behind them (mangle
// FORWARD). The pods' cannot be rejected: REJECT exists only in the filter
// table, where the network policy controller accepts the pods' traffic
// ahead of any other rule and keeps its jump first.
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
	// Chain is the guard's chain, in the filter and the mangle table. The
	// name carries "skiff", by which killall finds the rules it removes.
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
	// The network policy controller, starting at the same time, rewrites
	// the whole filter table from a copy it read a moment before, which
	// can take away a chain just made: the next attempt puts it back.
	for attempt := 1; ; attempt++ {
		if err = ensureAll(tables); err == nil {
			break
		}
		if attempt == startAttempts {
			return nil, err
		}
		logrus.Debugf("cluster-ip-guard: attempt %d: %v", attempt, err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(startRetry):
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
				if err := ensureAll(tables); err != nil {
					logrus.Warnf("cluster-ip-guard: %v", err)
				}
			}
		}
	}()
	return done, nil
}

// startAttempts and startRetry bound how long Start tries to put the
// rules in place.
const (
	startAttempts = 5
	startRetry    = time.Second
)

// ensureAll puts the rules of every family in place.
func ensureAll(tables []*table) error {
	for _, t := range tables {
		if err := t.ensure(); err != nil {
			return err
		}
	}
	return nil
}

// table is the guard's rules for one address family.
type table struct {
	ipt   *iptables.IPTables
	cidrs []netip.Prefix
}

func (g *Guard) tables() ([]*table, error) {
	v4, v6, err := rangesByFamily(g.ServiceCIDRs)
	if err != nil {
		return nil, err
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

// rangesByFamily parses comma-separated Service CIDRs into the IPv4 and
// the IPv6 ranges they name.
func rangesByFamily(cidrs string) (v4, v6 []netip.Prefix, err error) {
	for _, s := range strings.Split(cidrs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster-ip-guard: service CIDR %q: %w", s, err)
		}
		if p = p.Masked(); p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6, nil
}

// hook is where the guard's chain of one table is entered and what it
// does to a packet it catches. Both hooks come after kube-proxy's NAT, so
// a connection kube-proxy translated carries an endpoint's address there.
type hook struct {
	table, from, target string
}

var hooks = []hook{
	{"filter", "OUTPUT", "REJECT"}, // the node's own connections
	{"mangle", "FORWARD", "DROP"},  // the pods'
}

// jumpRule sends new connections through the guard's chain.
var jumpRule = []string{"-m", "conntrack", "--ctstate", "NEW",
	"-m", "comment", "--comment", "skiff: new connections to the Service CIDRs that kube-proxy did not translate", "-j", Chain}

// guardRules are the rules of h's chain: one for each range.
func guardRules(h hook, cidrs []netip.Prefix) [][]string {
	var rules [][]string
	for _, c := range cidrs {
		rules = append(rules, []string{"-d", c.String(),
			"-m", "comment", "--comment", "skiff: no Service has this ClusterIP and port", "-j", h.target})
	}
	return rules
}

// ensure makes each hook's chain hold exactly its rules and the jump to it
// exist.
func (t *table) ensure() error {
	for _, h := range hooks {
		want := guardRules(h, t.cidrs)
		ok, err := t.chainHolds(h.table, want)
		if err != nil {
			return err
		}
		if !ok {
			// ClearChain creates the chain or empties it.
			if err := t.ipt.ClearChain(h.table, Chain); err != nil {
				return fmt.Errorf("cluster-ip-guard: create %s in %s: %w", Chain, h.table, err)
			}
			for _, r := range want {
				if err := t.ipt.Append(h.table, Chain, r...); err != nil {
					return fmt.Errorf("cluster-ip-guard: add to %s in %s: %w", Chain, h.table, err)
				}
			}
		}
		exists, err := t.ipt.Exists(h.table, h.from, jumpRule...)
		if err != nil {
			return fmt.Errorf("cluster-ip-guard: check %s in %s: %w", h.from, h.table, err)
		}
		if !exists {
			if err := t.ipt.Insert(h.table, h.from, 1, jumpRule...); err != nil {
				return fmt.Errorf("cluster-ip-guard: add the jump from %s in %s: %w", h.from, h.table, err)
			}
		}
	}
	return nil
}

// chainHolds reports whether the table's chain exists with exactly want
// in it.
func (t *table) chainHolds(tbl string, want [][]string) (bool, error) {
	exists, err := t.ipt.ChainExists(tbl, Chain)
	if err != nil || !exists {
		return false, err
	}
	rules, err := t.ipt.List(tbl, Chain)
	if err != nil {
		return false, fmt.Errorf("cluster-ip-guard: list %s in %s: %w", Chain, tbl, err)
	}
	if len(rules) != len(want)+1 { // List's first line is the chain's -N
		return false, nil
	}
	for _, r := range want {
		if ok, err := t.ipt.Exists(tbl, Chain, r...); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}
