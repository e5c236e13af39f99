// Package ingress is Skiff's ingress controller: it turns the cluster's
// Ingress objects into HTTP and HTTPS routes to Service endpoints and proxies
// client traffic along them.
package ingress
