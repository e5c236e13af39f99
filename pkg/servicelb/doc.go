// Package servicelb is Skiff's ServiceLB controller, run inside the server:
// it gives every Service of type LoadBalancer the addresses of the nodes
// that serve it and leaves carrying the traffic to kube-proxy, which
// already accepts each address in status.loadBalancer.ingress on the
// Service's ports. Nothing runs on the nodes for it; the controller only
// writes Service status and Events.
package servicelb
