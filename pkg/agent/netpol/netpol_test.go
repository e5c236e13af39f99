package netpol

import (
	"slices"
	"testing"
	"time"
)

func TestRouterConfigFollowsTheCluster(t *testing.T) {
	c := &Controller{NodeName: "n1", ClusterCIDRs: "10.42.0.0/16,fd00:42::/56", ServiceCIDRs: "10.43.0.0/16, fd00:43::/112"}
	kr, err := c.routerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !kr.EnableIPv4 || !kr.EnableIPv6 {
		t.Errorf("dual-stack pods: ipv4 %t ipv6 %t, want both", kr.EnableIPv4, kr.EnableIPv6)
	}
	if want := []string{"10.43.0.0/16", "fd00:43::/112"}; !slices.Equal(kr.ClusterIPCIDRs, want) {
		t.Errorf("service ranges %q, want %q", kr.ClusterIPCIDRs, want)
	}
	if kr.NodePortRange != DefaultNodePortRange || kr.HostnameOverride != "n1" {
		t.Errorf("node port range %q, node %q", kr.NodePortRange, kr.HostnameOverride)
	}
	// Only the firewall: kube-router must not route, proxy or serve metrics
	// beside flannel and kube-proxy.
	if !kr.RunFirewall || kr.RunRouter || kr.RunServiceProxy || kr.MetricsEnabled {
		t.Errorf("firewall %t, router %t, proxy %t, metrics %t", kr.RunFirewall, kr.RunRouter, kr.RunServiceProxy, kr.MetricsEnabled)
	}
	if kr.IPTablesSyncPeriod != 5*time.Minute {
		t.Errorf("sync period %s, want kube-router's 5m", kr.IPTablesSyncPeriod)
	}

	c = &Controller{NodeName: "n1", ClusterCIDRs: "fd00:42::/56", ServiceCIDRs: "fd00:43::/112", SyncPeriod: time.Minute}
	if kr, err = c.routerConfig(); err != nil {
		t.Fatal(err)
	}
	if kr.EnableIPv4 || !kr.EnableIPv6 || kr.IPTablesSyncPeriod != time.Minute {
		t.Errorf("IPv6-only: ipv4 %t ipv6 %t, sync %s", kr.EnableIPv4, kr.EnableIPv6, kr.IPTablesSyncPeriod)
	}
}

func TestRouterConfigRefusesNoPodRange(t *testing.T) {
	for _, cidrs := range []string{"", " , ", "10.42.0.0"} {
		if _, err := (&Controller{ClusterCIDRs: cidrs, ServiceCIDRs: "10.43.0.0/16"}).routerConfig(); err == nil {
			t.Errorf("cluster CIDRs %q accepted", cidrs)
		}
	}
}
