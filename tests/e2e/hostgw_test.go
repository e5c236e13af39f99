package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMultiNodeHostGW runs the two-node cluster of TestMultiNode with the
// host-gw backend: no tunnel, each node routes the other's pod subnet via
// the other node's address on the shared bridge.
func TestMultiNodeHostGW(t *testing.T) {
	preflightNode(t)
	setupTestNetwork(t)
	s := newNode(t, "--node-ip", bridgeIP, "--flannel-iface", bridgeName, "--flannel-backend", "host-gw")
	s.start()
	s.waitReady()
	serverNode := s.waitNodeReady(3 * time.Minute).Metadata.Name
	code, out := runSkiff(t, 30*time.Second, "token", "--config", "", "--data-dir", s.dataDir)
	if code != 0 {
		t.Fatalf("skiff token: exit %d", code)
	}
	agentName := "skt-agent"
	prepareAgentCgroups(t, agentCgroupRoot(agentName))
	a := newAgent(t, s, agentName, agentIP, "", strings.TrimSpace(out))
	a.start()
	defer a.bind(t)()
	nodes := s.waitNodes([]string{serverNode, agentName}, 5*time.Minute, a.alive)
	for _, n := range nodes {
		if got := n.Metadata.Annotations["flannel.alpha.coreos.com/backend-type"]; got != "host-gw" {
			t.Errorf("node %s: flannel backend %q, want host-gw", n.Metadata.Name, got)
		}
	}

	// The server node routes the agent's pod subnet straight to the agent.
	agentCIDR := nodes[agentName].Spec.PodCIDR
	eventually(t, time.Minute, func() error {
		routes, err := ipCmd("route", "show", agentCIDR)
		if err != nil {
			return err
		}
		if !strings.Contains(routes, "via "+agentIP) {
			return fmt.Errorf("route to %s is %q, want one via %s", agentCIDR, strings.TrimSpace(routes), agentIP)
		}
		return nil
	})
	if linkExists("flannel.1") {
		t.Error("host-gw created the vxlan device flannel.1")
	}

	s.apply(spreadManifest)
	pods := s.waitPodsOnNodes("app=spread", map[string]int{serverNode: 1, agentName: 1}, 3*time.Minute)
	p1, p2 := pods[serverNode][0], pods[agentName][0]
	for _, c := range []struct{ from, to podInfo }{{p1, p2}, {p2, p1}} {
		eventually(t, time.Minute, func() error {
			body, err := s.podGet(c.from.Metadata.Name, webURL(c.to.Status.PodIP, webPort, "/host-gw"))
			if err != nil {
				return err
			}
			if want := "hostname=" + c.to.Metadata.Name + " path=/host-gw\n"; body != want {
				return fmt.Errorf("answer %q, want %q", body, want)
			}
			return nil
		})
	}
}
