package servicelb

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// wantProblem is one expected problem: the Service, the reason and words
// the message must contain.
type wantProblem struct {
	service, reason string
	contains        []string
}

func TestComputePlan(t *testing.T) {
	ready := func(name string, addrs ...string) *corev1.Node { return node(name, true, nil, addrs...) }
	labelled := func(name string, ready bool, value string, addrs ...string) *corev1.Node {
		return node(name, ready, map[string]string{EnableLBLabel: value}, addrs...)
	}
	twoNodes := []*corev1.Node{ready("b", "10.0.0.2", "ext:203.0.113.2"), ready("a", "10.0.0.1")}
	local := func(svc *corev1.Service) *corev1.Service {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		return svc
	}
	families := func(svc *corev1.Service, f ...corev1.IPFamily) *corev1.Service {
		svc.Spec.IPFamilies = f
		return svc
	}
	reserved := map[portKey]string{
		{6443, corev1.ProtocolTCP}: "the Skiff API server",
		{80, corev1.ProtocolTCP}:   "the bundled ingress controller",
	}

	for _, tc := range []struct {
		name     string
		services []*corev1.Service
		nodes    []*corev1.Node
		slices   []*discoveryv1.EndpointSlice
		// statuses holds every Service the plan sets a status for; nil
		// means cleared.
		statuses map[string][]string
		problems []wantProblem
	}{
		{
			name:     "ready nodes' internal and external IPs, sorted",
			services: []*corev1.Service{lbService("default", "web", 0, tcp(8080))},
			nodes:    append(twoNodes, node("down", false, nil, "10.0.0.3")),
			statuses: map[string][]string{"default/web": {"10.0.0.1", "10.0.0.2", "203.0.113.2"}},
		},
		{
			name:     "numeric order and duplicates dropped",
			services: []*corev1.Service{lbService("default", "web", 0, tcp(8080))},
			nodes:    []*corev1.Node{ready("a", "10.0.0.10", "ext:10.0.0.9"), ready("b", "10.0.0.9", "::ffff:10.0.0.10", "not-an-ip")},
			statuses: map[string][]string{"default/web": {"10.0.0.9", "10.0.0.10"}},
		},
		{
			name: "another class's Services and other types are left alone",
			services: func() []*corev1.Service {
				classed := withStatus(lbService("default", "metal", 0, tcp(8080)), "192.0.2.1")
				classed.Spec.LoadBalancerClass = ptr("example.com/metal")
				clusterIP := lbService("default", "plain", 0, tcp(8080))
				clusterIP.Spec.Type = corev1.ServiceTypeClusterIP
				classedClusterIP := withStatus(lbService("default", "odd", 0, tcp(8080)), "192.0.2.1")
				classedClusterIP.Spec.Type = corev1.ServiceTypeClusterIP
				classedClusterIP.Spec.LoadBalancerClass = ptr("example.com/metal")
				return []*corev1.Service{classed, clusterIP, classedClusterIP}
			}(),
			nodes:    twoNodes,
			statuses: map[string][]string{},
		},
		{
			name: "type changed away from LoadBalancer: status cleared",
			services: func() []*corev1.Service {
				svc := withStatus(lbService("default", "was-lb", 0, tcp(8080)), "10.0.0.1")
				svc.Spec.Type = corev1.ServiceTypeNodePort
				return []*corev1.Service{svc}
			}(),
			nodes:    twoNodes,
			statuses: map[string][]string{"default/was-lb": nil},
		},
		{
			name:     "enablelb=true on any node: only those serve",
			services: []*corev1.Service{lbService("default", "web", 0, tcp(8080))},
			nodes:    []*corev1.Node{ready("a", "10.0.0.1"), labelled("b", true, "true", "10.0.0.2"), labelled("c", true, "false", "10.0.0.3")},
			statuses: map[string][]string{"default/web": {"10.0.0.2"}},
		},
		{
			name:     "enablelb=false and the upstream exclusion label opt out",
			services: []*corev1.Service{lbService("default", "web", 0, tcp(8080))},
			nodes: []*corev1.Node{ready("a", "10.0.0.1"), labelled("b", true, "false", "10.0.0.2"),
				node("c", true, map[string]string{corev1.LabelNodeExcludeBalancers: ""}, "10.0.0.3")},
			statuses: map[string][]string{"default/web": {"10.0.0.1"}},
		},
		{
			name:     "the only labelled node is down: nobody serves",
			services: []*corev1.Service{lbService("default", "web", 0, tcp(8080))},
			nodes:    []*corev1.Node{ready("a", "10.0.0.1"), labelled("b", false, "true", "10.0.0.2")},
			statuses: map[string][]string{"default/web": nil},
			problems: []wantProblem{{"default/web", ReasonNoServingNodes, []string{EnableLBLabel + "=true", "none of them is Ready"}}},
		},
		{
			name:     "every ready node opted out, none left",
			services: []*corev1.Service{lbService("default", "web", 0, tcp(8080))},
			nodes:    []*corev1.Node{labelled("a", true, "false", "10.0.0.1")},
			statuses: map[string][]string{"default/web": nil},
			problems: []wantProblem{{"default/web", ReasonNoServingNodes, []string{EnableLBLabel + "=false"}}},
		},
		{
			name:     "no node is ready",
			services: []*corev1.Service{withStatus(lbService("default", "web", 0, tcp(8080)), "10.0.0.1")},
			nodes:    []*corev1.Node{node("a", false, nil, "10.0.0.1")},
			statuses: map[string][]string{"default/web": nil},
			problems: []wantProblem{{"default/web", ReasonNoServingNodes, []string{"no node is Ready"}}},
		},
		{
			name: "IP families",
			services: []*corev1.Service{
				families(lbService("default", "v6", 0, tcp(8080)), corev1.IPv6Protocol),
				families(lbService("default", "dual", 0, tcp(8081)), corev1.IPv6Protocol, corev1.IPv4Protocol),
				families(lbService("default", "v4", 0, tcp(8082)), corev1.IPv4Protocol),
			},
			nodes: []*corev1.Node{ready("a", "fd00::1", "10.0.0.1", "ext:2001:db8::1"), ready("b", "10.0.0.2")},
			statuses: map[string][]string{
				"default/v6":   {"2001:db8::1", "fd00::1"},
				"default/dual": {"10.0.0.1", "10.0.0.2", "2001:db8::1", "fd00::1"},
				"default/v4":   {"10.0.0.1", "10.0.0.2"},
			},
		},
		{
			name:     "no address of the Service's family",
			services: []*corev1.Service{families(lbService("default", "v6", 0, tcp(8080)), corev1.IPv6Protocol)},
			nodes:    twoNodes,
			statuses: map[string][]string{"default/v6": nil},
			problems: []wantProblem{{"default/v6", ReasonNoServingNodes, []string{"IPv6"}}},
		},
		{
			name:     "externalTrafficPolicy Local: only nodes with a ready endpoint",
			services: []*corev1.Service{local(lbService("shop", "web", 0, tcp(8080)))},
			nodes:    []*corev1.Node{ready("a", "10.0.0.1"), ready("b", "10.0.0.2"), ready("c", "10.0.0.3"), node("d", false, nil, "10.0.0.4")},
			slices: []*discoveryv1.EndpointSlice{
				endpointSlice("shop", "web", "web-1", testEndpoint{"a", nil}, testEndpoint{"b", ptr(false)}, testEndpoint{"", nil}),
				endpointSlice("shop", "web", "web-2", testEndpoint{"c", ptr(true)}, testEndpoint{"d", ptr(true)}),
				endpointSlice("shop", "other", "other-1", testEndpoint{"b", ptr(true)}),
				endpointSlice("default", "web", "web-1", testEndpoint{"b", ptr(true)}),
			},
			statuses: map[string][]string{"shop/web": {"10.0.0.1", "10.0.0.3"}},
		},
		{
			name:     "externalTrafficPolicy Local without ready endpoints",
			services: []*corev1.Service{local(lbService("shop", "web", 0, tcp(8080)))},
			nodes:    twoNodes,
			slices:   []*discoveryv1.EndpointSlice{endpointSlice("shop", "web", "web-1", testEndpoint{"a", ptr(false)})},
			statuses: map[string][]string{"shop/web": nil},
			problems: []wantProblem{{"shop/web", ReasonNoServingNodes, []string{"Local", "ready endpoint"}}},
		},
		{
			name:     "reserved port",
			services: []*corev1.Service{withStatus(lbService("default", "api", 0, tcp(8443), tcp(6443)), "10.0.0.1")},
			nodes:    twoNodes,
			statuses: map[string][]string{"default/api": nil},
			problems: []wantProblem{{"default/api", ReasonPortReserved, []string{"6443/TCP", "the Skiff API server", "another port", "disable"}}},
		},
		{
			name:     "a reserved TCP port is free over UDP",
			services: []*corev1.Service{lbService("default", "quic", 0, udp(80))},
			nodes:    twoNodes,
			statuses: map[string][]string{"default/quic": {"10.0.0.1", "10.0.0.2", "203.0.113.2"}},
		},
		{
			name: "the older Service keeps a shared port",
			services: []*corev1.Service{
				lbService("b", "newer", 5, tcp(8080), tcp(9090)),
				lbService("a", "older", 1, tcp(8080)),
				lbService("c", "other", 9, udp(8080), tcp(9091)),
			},
			nodes: []*corev1.Node{ready("a", "10.0.0.1")},
			statuses: map[string][]string{
				"a/older": {"10.0.0.1"},
				"b/newer": nil,
				"c/other": {"10.0.0.1"},
			},
			problems: []wantProblem{{"b/newer", ReasonPortConflict, []string{"8080/TCP", "a/older"}}},
		},
		{
			name: "same age: namespace, then name decides",
			services: []*corev1.Service{
				lbService("b", "web", 0, tcp(8080)),
				lbService("a", "z", 0, tcp(8080)),
				lbService("a", "y", 0, tcp(8080)),
			},
			nodes:    []*corev1.Node{ready("a", "10.0.0.1")},
			statuses: map[string][]string{"a/y": {"10.0.0.1"}, "a/z": nil, "b/web": nil},
			problems: []wantProblem{
				{"a/z", ReasonPortConflict, []string{"a/y"}},
				{"b/web", ReasonPortConflict, []string{"a/y"}},
			},
		},
		{
			name: "a refused Service holds none of its ports",
			services: []*corev1.Service{
				lbService("default", "oldest", 0, tcp(8080), tcp(80)),
				lbService("default", "middle", 1, tcp(8080), tcp(9090)),
				lbService("default", "newest", 2, tcp(9090), tcp(8080)),
			},
			nodes: []*corev1.Node{ready("a", "10.0.0.1")},
			statuses: map[string][]string{
				"default/oldest": nil,
				"default/middle": {"10.0.0.1"},
				"default/newest": nil,
			},
			problems: []wantProblem{
				{"default/oldest", ReasonPortReserved, []string{"80/TCP", "the bundled ingress controller"}},
				{"default/newest", ReasonPortConflict, []string{"9090/TCP", "default/middle"}},
				{"default/newest", ReasonPortConflict, []string{"8080/TCP", "default/middle"}},
			},
		},
		{
			name: "an admitted Service without serving nodes still holds its ports",
			services: []*corev1.Service{
				local(lbService("default", "older", 0, tcp(8080))),
				lbService("default", "newer", 1, tcp(8080)),
			},
			nodes:    []*corev1.Node{ready("a", "10.0.0.1")},
			statuses: map[string][]string{"default/older": nil, "default/newer": nil},
			problems: []wantProblem{
				{"default/older", ReasonNoServingNodes, []string{"Local"}},
				{"default/newer", ReasonPortConflict, []string{"default/older"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := computePlan(clusterState{services: tc.services, nodes: tc.nodes, slices: tc.slices}, reserved)

			got := map[string][]string{}
			for _, s := range p.statuses {
				id := s.service.Namespace + "/" + s.service.Name
				if _, dup := got[id]; dup {
					t.Errorf("two statuses planned for %s", id)
				}
				var ips []string
				for _, i := range s.ingress {
					if i.Hostname != "" || i.IPMode != nil || len(i.Ports) != 0 {
						t.Errorf("status of %s has more than an IP: %+v", id, i)
					}
					ips = append(ips, i.IP)
				}
				got[id] = ips
			}
			if !reflect.DeepEqual(got, tc.statuses) {
				t.Errorf("statuses = %q, want %q", got, tc.statuses)
			}

			if len(p.problems) != len(tc.problems) {
				t.Fatalf("problems = %+v, want %d", p.problems, len(tc.problems))
			}
			for i, want := range tc.problems {
				gotProblem := p.problems[i]
				id := gotProblem.Object.Namespace + "/" + gotProblem.Object.Name
				if id != want.service || gotProblem.Reason != want.reason {
					t.Errorf("problem %d = %s %s, want %s %s", i, id, gotProblem.Reason, want.service, want.reason)
				}
				for _, word := range want.contains {
					if !strings.Contains(gotProblem.Message, word) {
						t.Errorf("problem %d message %q does not mention %q", i, gotProblem.Message, word)
					}
				}
			}

			for _, svc := range p.handled {
				if !handles(svc) {
					t.Errorf("%s/%s handled but not ours", svc.Namespace, svc.Name)
				}
			}
		})
	}
}

func TestComputePlanServesTheWaitingServiceOnceTheHolderLeaves(t *testing.T) {
	nodes := []*corev1.Node{node("a", true, nil, "10.0.0.1")}
	older := lbService("default", "older", 0, tcp(8080))
	newer := lbService("default", "newer", 1, tcp(8080))
	statusOf := func(p plan, name string) []corev1.LoadBalancerIngress {
		for _, s := range p.statuses {
			if s.service.Name == name {
				return s.ingress
			}
		}
		t.Fatalf("no status planned for %s", name)
		return nil
	}

	p := computePlan(clusterState{services: []*corev1.Service{older, newer}, nodes: nodes}, nil)
	if statusOf(p, "newer") != nil {
		t.Fatal("newer Service served while the older one holds its port")
	}
	// The holder moves to another port, then goes away: either frees it.
	moved := older.DeepCopy()
	moved.Spec.Ports = []corev1.ServicePort{tcp(8081)}
	for _, services := range [][]*corev1.Service{{moved, newer}, {newer}} {
		p = computePlan(clusterState{services: services, nodes: nodes}, nil)
		if got := statusOf(p, "newer"); len(got) != 1 || got[0].IP != "10.0.0.1" {
			t.Fatalf("newer Service status = %+v, want 10.0.0.1", got)
		}
		if len(p.problems) != 0 {
			t.Fatalf("problems = %+v, want none", p.problems)
		}
	}
}

func TestSelectNodesIgnoresDeletedNodes(t *testing.T) {
	gone := node("gone", true, nil, "10.0.0.9")
	gone.DeletionTimestamp = ptr(metav1.NewTime(testTime))
	pool := selectNodes([]*corev1.Node{gone, node("a", true, nil, "10.0.0.1")})
	if len(pool.serving) != 1 || pool.serving[0].Name != "a" {
		t.Fatalf("serving = %v, want only a", pool.serving)
	}
}
