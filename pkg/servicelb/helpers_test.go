package servicelb

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

var testTime = time.Date(2026, time.January, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// lbService is a LoadBalancer Service created minutes after testTime,
// IPv4 only unless families are set later; ports are "80" style TCP ports.
func lbService(namespace, name string, minutes int, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         namespace,
			Name:              name,
			UID:               types.UID(namespace + "-" + name + "-uid"),
			CreationTimestamp: metav1.NewTime(testTime.Add(time.Duration(minutes) * time.Minute)),
		},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			Ports:      ports,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
		},
	}
}

func tcp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Port: port, Protocol: corev1.ProtocolTCP}
}

func udp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Port: port, Protocol: corev1.ProtocolUDP}
}

func withStatus(svc *corev1.Service, ips ...string) *corev1.Service {
	svc.Status.LoadBalancer.Ingress = nil
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return svc
}

// node is a Node whose addresses are InternalIPs, or ExternalIPs when
// prefixed with "ext:".
func node(name string, ready bool, labels map[string]string, addrs ...string) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}},
		},
	}
	for _, a := range addrs {
		addrType := corev1.NodeInternalIP
		if len(a) > 4 && a[:4] == "ext:" {
			addrType, a = corev1.NodeExternalIP, a[4:]
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: addrType, Address: a})
	}
	return n
}

type testEndpoint struct {
	node  string
	ready *bool
}

func endpointSlice(namespace, service, name string, endpoints ...testEndpoint) *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace,
			Name:      name,
			Labels:    map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, ep := range endpoints {
		e := discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.42.0.%d", i+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ep.ready},
		}
		if ep.node != "" {
			e.NodeName = ptr(ep.node)
		}
		slice.Endpoints = append(slice.Endpoints, e)
	}
	return slice
}

func drainEvents(recorder *record.FakeRecorder) []string {
	var events []string
	for {
		select {
		case e := <-recorder.Events:
			events = append(events, e)
		default:
			return events
		}
	}
}
