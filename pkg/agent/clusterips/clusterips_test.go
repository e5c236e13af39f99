package clusterips

import (
	"net/netip"
	"strings"
	"testing"
)

func TestGuardRules(t *testing.T) {
	var rules [][]string
	for _, h := range hooks {
		rs := guardRules(h, []netip.Prefix{netip.MustParsePrefix("10.43.0.0/16")})
		if len(rs) != 1 {
			t.Fatalf("%s: got %d rules, want 1", h.table, len(rs))
		}
		got := strings.Join(rs[0], " ")
		if !strings.HasPrefix(got, "-d 10.43.0.0/16 ") || !strings.HasSuffix(got, "-j "+h.target) {
			t.Errorf("%s: rule %q does not catch the range", h.table, got)
		}
		// REJECT exists only in the filter table.
		if h.target == "REJECT" && h.table != "filter" {
			t.Errorf("%s: REJECT outside the filter table", h.table)
		}
		rules = append(rules, rs...)
	}
	jump := strings.Join(jumpRule, " ")
	if !strings.Contains(jump, "--ctstate NEW") || !strings.HasSuffix(jump, "-j "+Chain) {
		t.Errorf("jump %q does not send new connections to %s", jump, Chain)
	}
	// killall removes the rules whose lines name skiff.
	for _, r := range append(rules, jumpRule) {
		if !strings.Contains(strings.ToLower(strings.Join(r, " ")), "skiff") {
			t.Errorf("rule %q does not name skiff", r)
		}
	}
}

func TestRangesByFamily(t *testing.T) {
	v4, v6, err := rangesByFamily("10.43.0.1/16, fd00:43::/112")
	if err != nil {
		t.Fatal(err)
	}
	if len(v4) != 1 || v4[0].String() != "10.43.0.0/16" || len(v6) != 1 || v6[0].String() != "fd00:43::/112" {
		t.Errorf("ranges %v %v", v4, v6)
	}
	if _, _, err := rangesByFamily("10.43.0.0"); err == nil {
		t.Error("an address without a prefix length was taken for a range")
	}
	if _, err := (&Guard{ServiceCIDRs: " "}).tables(); err == nil {
		t.Error("no range at all was accepted")
	}
}
