package servicelb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skiff-io/skiff/pkg/eventreport"
)

// EnableLBLabel chooses the serving nodes: once any node has it set to
// "true" only such nodes serve, and "false" keeps a node out regardless.
const EnableLBLabel = "svccontroller.skiff.io/enablelb"

// Event reasons, part of the interface users see (kubectl describe) and
// search for.
const (
	ReasonPortReserved     = "PortReserved"
	ReasonPortConflict     = "PortConflict"
	ReasonNoServingNodes   = "NoServingNodes"
	ReasonAddressesUpdated = "AddressesUpdated"
)

// clusterState is what one sync looks at, straight from the informers'
// caches; nothing in it may be modified.
type clusterState struct {
	services []*corev1.Service
	nodes    []*corev1.Node
	slices   []*discoveryv1.EndpointSlice
}

// desiredStatus is the status.loadBalancer.ingress one Service should
// carry; nil means none, which kubectl shows as <pending>.
type desiredStatus struct {
	service *corev1.Service
	ingress []corev1.LoadBalancerIngress
}

type (
	problem        = eventreport.Problem
	serviceProblem = eventreport.Found[*corev1.Service]
)

// plan is the outcome of one sync: what to write and what to tell.
type plan struct {
	// handled are the Services this controller is responsible for, oldest
	// first.
	handled  []*corev1.Service
	statuses []desiredStatus
	problems []serviceProblem
}

// handles reports whether a Service is ours. A load balancer class names
// another implementation, whose Services are never touched.
func handles(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

// computePlan decides every Service's addresses from scratch.
//
// Port sharing is settled oldest first (creation time, then namespace and
// name): a Service is admitted only if none of its ports is reserved or
// held by a Service admitted before it, and an admitted Service holds all
// its ports, even while no node can serve it, so that the holder does not
// flip with its pods' readiness. A refused Service holds nothing: it must
// not keep a newer Service off a port that serves nobody meanwhile. The rule
// needs no memory, so a restarted or newly elected controller decides the
// same. Its one surprise: a Service older than the current holder that
// becomes type LoadBalancer, or drops a reserved port, takes the port over;
// the holder then gets the PortConflict Event.
func computePlan(state clusterState, reserved map[portKey]string) plan {
	var p plan
	for _, svc := range state.services {
		switch {
		case handles(svc):
			p.handled = append(p.handled, svc)
		case svc.Spec.LoadBalancerClass == nil && len(svc.Status.LoadBalancer.Ingress) > 0:
			// The type changed away from LoadBalancer: the addresses would
			// keep advertising a load balancer that no longer exists.
			p.statuses = append(p.statuses, desiredStatus{service: svc})
		}
	}
	slices.SortFunc(p.handled, compareAge)

	pool := selectNodes(state.nodes)
	var localNodes map[string]map[string]bool // per Service, filled on first need
	held := map[portKey]*corev1.Service{}
	for _, svc := range p.handled {
		ports := servicePorts(svc)
		var refusals []problem
		for _, port := range ports {
			if reason, ok := reserved[port]; ok {
				refusals = append(refusals, problem{Reason: ReasonPortReserved, Message: fmt.Sprintf(
					"port %s is reserved for %s, so this Service gets no address: choose another port, or disable that component to free the port",
					port, reason)})
			} else if holder := held[port]; holder != nil {
				refusals = append(refusals, problem{Reason: ReasonPortConflict, Message: fmt.Sprintf(
					"port %s is already served for the older Service %s/%s, so this Service gets no address: choose another port, "+
						"or remove the port from %s/%s and this Service is served next",
					port, holder.Namespace, holder.Name, holder.Namespace, holder.Name)})
			}
		}
		if len(refusals) > 0 {
			p.statuses = append(p.statuses, desiredStatus{service: svc})
			for _, r := range refusals {
				p.problems = append(p.problems, serviceProblem{Object: svc, Problem: r})
			}
			continue
		}
		for _, port := range ports {
			held[port] = svc
		}

		nodes, why := pool.serving, pool.noneServing
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && len(nodes) > 0 {
			if localNodes == nil {
				localNodes = nodesWithReadyEndpoints(state.slices)
			}
			nodes = withEndpoints(nodes, localNodes[svc.Namespace+"/"+svc.Name])
			why = "externalTrafficPolicy is Local and no serving node runs a ready endpoint of this Service: " +
				"it gets addresses once one does, or set externalTrafficPolicy to Cluster"
		}
		ingress := ingressFor(nodeAddresses(nodes, svc.Spec.IPFamilies))
		if len(ingress) == 0 && len(nodes) > 0 {
			why = fmt.Sprintf("no serving node has an InternalIP or ExternalIP of this Service's IP families (%s)", familiesText(svc.Spec.IPFamilies))
		}
		p.statuses = append(p.statuses, desiredStatus{service: svc, ingress: ingress})
		if len(ingress) == 0 {
			p.problems = append(p.problems, serviceProblem{Object: svc, Problem: problem{Reason: ReasonNoServingNodes, Message: why}})
		}
	}
	return p
}

func compareAge(a, b *corev1.Service) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// nodePool is the nodes every handled Service is offered, and, when there
// are none, the sentence telling why.
type nodePool struct {
	serving     []*corev1.Node
	noneServing string
}

func selectNodes(nodes []*corev1.Node) nodePool {
	// Labelling any node, even one that is down, switches to opt-in: falling
	// back to every node while the chosen ones are NotReady would publish
	// exactly the nodes the admin meant to keep out.
	optIn := slices.ContainsFunc(nodes, func(n *corev1.Node) bool { return n.Labels[EnableLBLabel] == "true" })
	var pool nodePool
	ready := 0
	for _, node := range nodes {
		if !nodeReady(node) {
			continue
		}
		ready++
		if excluded(node, optIn) {
			continue
		}
		pool.serving = append(pool.serving, node)
	}
	switch {
	case len(pool.serving) > 0:
	case ready == 0:
		pool.noneServing = "no node is Ready: this Service gets addresses once one is"
	case optIn:
		pool.noneServing = fmt.Sprintf("some node is labelled %s=true, so only such nodes serve, and none of them is Ready: "+
			"label a Ready node with %s=true, or remove the label from all nodes", EnableLBLabel, EnableLBLabel)
	default:
		pool.noneServing = fmt.Sprintf("every Ready node is labelled %s=false or %s: remove that label from a node that should serve",
			EnableLBLabel, corev1.LabelNodeExcludeBalancers)
	}
	return pool
}

// excluded honours, besides Skiff's own label, the upstream one that every
// cloud load balancer controller honours, so that nodes set up for those
// behave the same here.
func excluded(node *corev1.Node, optIn bool) bool {
	if node.DeletionTimestamp != nil {
		return true
	}
	if _, ok := node.Labels[corev1.LabelNodeExcludeBalancers]; ok {
		return true
	}
	switch node.Labels[EnableLBLabel] {
	case "false":
		return true
	case "true":
		return false
	}
	return optIn
}

func nodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// nodesWithReadyEndpoints maps namespace/service to the nodes that run a
// ready endpoint of it. A missing ready condition counts as ready, as the
// EndpointSlice API asks its consumers to treat it.
func nodesWithReadyEndpoints(endpointSlices []*discoveryv1.EndpointSlice) map[string]map[string]bool {
	byService := map[string]map[string]bool{}
	for _, slice := range endpointSlices {
		service := slice.Labels[discoveryv1.LabelServiceName]
		if service == "" {
			continue
		}
		id := slice.Namespace + "/" + service
		for _, ep := range slice.Endpoints {
			if ep.NodeName == nil || *ep.NodeName == "" || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if byService[id] == nil {
				byService[id] = map[string]bool{}
			}
			byService[id][*ep.NodeName] = true
		}
	}
	return byService
}

func withEndpoints(nodes []*corev1.Node, withEndpoint map[string]bool) []*corev1.Node {
	var kept []*corev1.Node
	for _, node := range nodes {
		if withEndpoint[node.Name] {
			kept = append(kept, node)
		}
	}
	return kept
}

// nodeAddresses returns the nodes' internal and external IPs of the given
// families, distinct and in netip order (IPv4 first), so that the status
// stays byte-for-byte the same while the nodes do. No families, which the
// API server never leaves on a LoadBalancer Service, means any.
func nodeAddresses(nodes []*corev1.Node, families []corev1.IPFamily) []netip.Addr {
	wantV4 := len(families) == 0 || slices.Contains(families, corev1.IPv4Protocol)
	wantV6 := len(families) == 0 || slices.Contains(families, corev1.IPv6Protocol)
	var addrs []netip.Addr
	for _, node := range nodes {
		for _, a := range node.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			addr, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			addr = addr.Unmap().WithZone("")
			if (addr.Is4() && wantV4) || (addr.Is6() && wantV6) {
				addrs = append(addrs, addr)
			}
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}

// ingressFor leaves ipMode unset: the API server defaults it to VIP, which
// is what kube-proxy needs to accept the traffic on the node.
func ingressFor(addrs []netip.Addr) []corev1.LoadBalancerIngress {
	if len(addrs) == 0 {
		return nil
	}
	ingress := make([]corev1.LoadBalancerIngress, 0, len(addrs))
	for _, addr := range addrs {
		ingress = append(ingress, corev1.LoadBalancerIngress{IP: addr.String()})
	}
	return ingress
}

func familiesText(families []corev1.IPFamily) string {
	if len(families) == 0 {
		return "any"
	}
	names := make([]string, 0, len(families))
	for _, f := range families {
		names = append(names, string(f))
	}
	return strings.Join(names, ", ")
}
