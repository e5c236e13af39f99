package ingress

import (
	"net"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// RouteTable answers which backend serves a request. It is immutable once
// built, so the proxy can read it from many goroutines while a newer table is
// being prepared.
type RouteTable struct {
	exactHosts     map[string][]pathRoute
	wildcardHosts  map[string][]pathRoute // keyed by the domain after "*."
	anyHost        []pathRoute
	defaultBackend *Backend
}

type pathRoute struct {
	// path is the rule path; for prefix routes without its trailing slashes,
	// so that "/foo/" and "/foo" both match the element "/foo".
	path    string
	exact   bool
	order   int // position in the merged rule list, the final tie-breaker
	backend *Backend
}

func (r pathRoute) matches(requestPath string) bool {
	if r.exact {
		return requestPath == r.path
	}
	return requestPath == r.path || strings.HasPrefix(requestPath, r.path+"/")
}

// Match returns the backend for a request host (with or without port) and
// URL path, or nil when no rule and no default backend applies.
//
// A request first tries the rules of its exact host, then those of the
// matching wildcard host, then the rules without a host, and only then the
// default backend: a host-less rule is a catch-all for every host.
func (t *RouteTable) Match(host, path string) *Backend {
	if t == nil {
		return nil
	}
	if path == "" {
		path = "/"
	}
	host = normalizeHost(host)
	if b := matchPath(t.exactHosts[host], path); b != nil {
		return b
	}
	if dot := strings.IndexByte(host, '.'); dot > 0 {
		if b := matchPath(t.wildcardHosts[host[dot+1:]], path); b != nil {
			return b
		}
	}
	if b := matchPath(t.anyHost, path); b != nil {
		return b
	}
	return t.defaultBackend
}

func matchPath(routes []pathRoute, path string) *Backend {
	for _, r := range routes {
		if r.matches(path) {
			return r.backend
		}
	}
	return nil
}

// normalizeHost strips the port and the trailing dot of a fully qualified
// name and lower-cases the rest, since DNS names are case-insensitive.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	return strings.ToLower(host)
}

// routeTableBuilder collects rules in merge order and sorts them into the
// precedence the Ingress specification defines.
type routeTableBuilder struct {
	table RouteTable
	added int
}

func newRouteTableBuilder() *routeTableBuilder {
	return &routeTableBuilder{table: RouteTable{
		exactHosts:    map[string][]pathRoute{},
		wildcardHosts: map[string][]pathRoute{},
	}}
}

// addPath registers one Ingress HTTP path. Rules added earlier win ties, so
// callers add Ingresses oldest first.
func (b *routeTableBuilder) addPath(host, path string, pathType networkingv1.PathType, backend *Backend) {
	route := pathRoute{backend: backend, order: b.added}
	b.added++
	if path == "" {
		path = "/"
	}
	if pathType == networkingv1.PathTypeExact {
		route.exact = true
		route.path = path
	} else {
		// Prefix and ImplementationSpecific both match whole path elements.
		route.path = strings.TrimRight(path, "/")
	}
	host = strings.ToLower(host)
	switch {
	case host == "":
		b.table.anyHost = append(b.table.anyHost, route)
	case strings.HasPrefix(host, "*."):
		domain := host[2:]
		b.table.wildcardHosts[domain] = append(b.table.wildcardHosts[domain], route)
	default:
		b.table.exactHosts[host] = append(b.table.exactHosts[host], route)
	}
}

// setDefaultBackend keeps the first default backend it is given.
func (b *routeTableBuilder) setDefaultBackend(backend *Backend) {
	if b.table.defaultBackend == nil {
		b.table.defaultBackend = backend
	}
}

func (b *routeTableBuilder) build() *RouteTable {
	sortByPrecedence(b.table.anyHost)
	for _, routes := range b.table.exactHosts {
		sortByPrecedence(routes)
	}
	for _, routes := range b.table.wildcardHosts {
		sortByPrecedence(routes)
	}
	table := b.table
	return &table
}

// sortByPrecedence orders routes so that the first match is the right one:
// longest path first, Exact before Prefix for the same length, then the
// older rule.
func sortByPrecedence(routes []pathRoute) {
	sort.Slice(routes, func(i, j int) bool {
		a, b := routes[i], routes[j]
		if len(a.path) != len(b.path) {
			return len(a.path) > len(b.path)
		}
		if a.exact != b.exact {
			return a.exact
		}
		return a.order < b.order
	})
}
