package agent

import (
	"slices"
	"testing"

	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

func testNode(backend string) *config.CompletedAgent {
	return &config.CompletedAgent{
		Node:                config.CompletedNode{Paths: layout.New("/data"), Name: "node-a", FlannelBackend: backend},
		ServerURL:           "https://192.0.2.1:6443",
		Token:               "secret",
		LoadBalancerAddress: config.DefaultLoadBalancerAddress,
	}
}

func requirements(comps []component.Component) map[string][]string {
	out := map[string][]string{}
	for _, c := range comps {
		out[c.Name()] = component.Requires(c)
	}
	return out
}

// `skiff agent` joins before it touches the host, unpacks anything or
// lets the load balancer probe the server: a refused token, or a server
// whose CA does not match it, starts nothing.
func TestAgentStartsItsRuntimeAfterTheJoin(t *testing.T) {
	comps := (&Node{Config: testNode("")}).Components()
	if err := component.Check(comps...); err != nil {
		t.Fatal(err)
	}
	req := requirements(comps)
	for _, name := range []string{hostName, helpersName} {
		if !slices.Equal(req[name], []string{joinName}) {
			t.Errorf("%s requires %v, want the join", name, req[name])
		}
	}
	for name, want := range map[string][]string{
		"load-balancer":    {joinName},
		containerdName:     {hostName, helpersName},
		imagesName:         {containerdName},
		kubeletName:        {joinName, imagesName},
		flannelName:        {kubeletName},
		"kube-proxy":       {flannelName},
		"server-discovery": {joinName},
	} {
		if !slices.Equal(req[name], want) {
			t.Errorf("%s requires %v, want %v", name, req[name], want)
		}
	}
}

// Beside a server, the runtime starts with the control plane; the join
// waits for the join endpoints, the kubelet for the controller-manager.
func TestServerNodeStartsItsRuntimeAtOnce(t *testing.T) {
	node := &Node{Config: testNode("vxlan"), JoinAfter: []string{"join cache"}, KubeletAfter: []string{"kube-controller-manager"}}
	comps := node.Components()
	req := requirements(comps)
	if len(req[hostName]) != 0 || len(req[helpersName]) != 0 {
		t.Errorf("host %v, helpers %v: want no requirement", req[hostName], req[helpersName])
	}
	if !slices.Equal(req[joinName], []string{"join cache"}) || !slices.Equal(req["load-balancer"], []string{joinName}) {
		t.Errorf("join %v, load balancer %v", req[joinName], req["load-balancer"])
	}
	if !slices.Contains(req[kubeletName], "kube-controller-manager") {
		t.Errorf("kubelet requires %v", req[kubeletName])
	}
	// In the server's list the node follows the server's components.
	server := []component.Component{component.Task("join cache", nil), component.Task("kube-controller-manager", nil)}
	if err := component.Check(append(server, comps...)...); err != nil {
		t.Fatal(err)
	}
}

func TestWithRegistry(t *testing.T) {
	for _, c := range []struct{ name, registry, want string }{
		{PauseImage, "", PauseImage},
		{PauseImage, "registry.example:5000", "registry.example:5000/system/pause:3.10"},
		{CoreDNSImage, "mirror.example", "mirror.example/system/coredns:1.15.0"},
	} {
		if got := WithRegistry(c.name, c.registry); got != c.want {
			t.Errorf("WithRegistry(%q, %q) = %q, want %q", c.name, c.registry, got, c.want)
		}
	}
}
