package ingress

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

func TestRouteTableMatch(t *testing.T) {
	backends := map[string]*Backend{}
	backend := func(name string) *Backend {
		if backends[name] == nil {
			backends[name] = newBackend(name, nil, nil)
		}
		return backends[name]
	}
	exact, prefix, implementation := networkingv1.PathTypeExact, networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific

	b := newRouteTableBuilder()
	b.addPath("app.example.com", "/", prefix, backend("app-root"))
	b.addPath("app.example.com", "/foo", prefix, backend("app-foo"))
	b.addPath("app.example.com", "/foo/bar/", prefix, backend("app-foo-bar"))
	b.addPath("app.example.com", "/foo", exact, backend("app-foo-exact"))
	b.addPath("app.example.com", "/legacy", implementation, backend("app-legacy"))
	b.addPath("app.example.com", "/dup", prefix, backend("dup-first"))
	b.addPath("app.example.com", "/dup", prefix, backend("dup-second"))
	b.addPath("*.example.com", "/", prefix, backend("wildcard"))
	b.addPath("Only.Exact.Test", "/exact-only", exact, backend("exact-only"))
	b.addPath("", "/catch", prefix, backend("any-host-catch"))
	b.setDefaultBackend(backend("default"))
	b.setDefaultBackend(backend("second-default"))
	table := b.build()

	tests := []struct {
		host, path string
		want       string
	}{
		{"app.example.com", "/", "app-root"},
		{"app.example.com", "", "app-root"},
		{"app.example.com:8080", "/x", "app-root"},
		{"APP.example.com.", "/x", "app-root"},
		// Exact wins over Prefix of the same length.
		{"app.example.com", "/foo", "app-foo-exact"},
		// Prefix matches whole path elements only.
		{"app.example.com", "/foo/", "app-foo"},
		{"app.example.com", "/foo/baz", "app-foo"},
		{"app.example.com", "/foobar", "app-root"},
		// Longest prefix wins; a trailing slash in the rule does not matter.
		{"app.example.com", "/foo/bar", "app-foo-bar"},
		{"app.example.com", "/foo/bar/baz", "app-foo-bar"},
		{"app.example.com", "/foo/barbaz", "app-foo"},
		// ImplementationSpecific is a prefix match.
		{"app.example.com", "/legacy/x", "app-legacy"},
		{"app.example.com", "/legacyx", "app-root"},
		// The older of two identical rules wins.
		{"app.example.com", "/dup", "dup-first"},
		// A wildcard covers exactly one label.
		{"other.example.com", "/anything", "wildcard"},
		{"deep.other.example.com", "/catch/me", "any-host-catch"},
		{"example.com", "/catch", "any-host-catch"},
		// Exact paths are case sensitive and do not match with a trailing slash.
		{"only.exact.test", "/exact-only", "exact-only"},
		{"only.exact.test", "/exact-only/", "default"},
		{"only.exact.test", "/Exact-only", "default"},
		// A host with no matching path falls through to host-less rules.
		{"only.exact.test", "/catch", "any-host-catch"},
		{"unknown.test", "/", "default"},
	}
	for _, tt := range tests {
		got := table.Match(tt.host, tt.path)
		if got == nil || got.Service != tt.want {
			name := "<nil>"
			if got != nil {
				name = got.Service
			}
			t.Errorf("Match(%q, %q) = %s, want %s", tt.host, tt.path, name, tt.want)
		}
	}
}

func TestRouteTableWithoutDefaultBackendMatchesNothing(t *testing.T) {
	b := newRouteTableBuilder()
	b.addPath("app.example.com", "/api", networkingv1.PathTypePrefix, newBackend("api", nil, nil))
	table := b.build()
	for _, req := range [][2]string{{"app.example.com", "/"}, {"app.example.com", "/apis"}, {"other.test", "/api"}} {
		if got := table.Match(req[0], req[1]); got != nil {
			t.Errorf("Match(%q, %q) = %s, want no match", req[0], req[1], got.Service)
		}
	}
	var empty *RouteTable
	if empty.Match("a", "/") != nil {
		t.Error("nil table matched a request")
	}
}

func TestRootPrefixMatchesEveryPath(t *testing.T) {
	b := newRouteTableBuilder()
	b.addPath("", "/", networkingv1.PathTypePrefix, newBackend("root", nil, nil))
	table := b.build()
	for _, path := range []string{"/", "/a", "/a/b/c"} {
		if got := table.Match("any.test", path); got == nil {
			t.Errorf("Match(any.test, %q) = nil, want root", path)
		}
	}
}

func TestClassFilter(t *testing.T) {
	withClass := func(class string) *networkingv1.Ingress {
		ing := newIngress("default", "x", testTime)
		ing.Spec.IngressClassName = ptr(class)
		return ing
	}
	withAnnotation := func(class string) *networkingv1.Ingress {
		ing := newIngress("default", "x", testTime)
		ing.Annotations = map[string]string{legacyClassAnnotation: class}
		return ing
	}
	noClass := newIngress("default", "x", testTime)

	defaultClass := &networkingv1.IngressClass{}
	defaultClass.Annotations = map[string]string{defaultClassAnnotation: "true"}
	notDefault := &networkingv1.IngressClass{}

	tests := []struct {
		name  string
		class *networkingv1.IngressClass
		ing   *networkingv1.Ingress
		want  bool
	}{
		{"matching class name", nil, withClass("skiff"), true},
		{"other class name", defaultClass, withClass("nginx"), false},
		{"no class, skiff is default", defaultClass, noClass, true},
		{"no class, skiff not default", notDefault, noClass, false},
		{"no class, no IngressClass object", nil, noClass, false},
		{"legacy annotation", nil, withAnnotation("skiff"), true},
		{"legacy annotation for another controller", defaultClass, withAnnotation("traefik"), false},
	}
	for _, tt := range tests {
		if got := newClassFilter("skiff", tt.class).handles(tt.ing); got != tt.want {
			t.Errorf("%s: handles = %v, want %v", tt.name, got, tt.want)
		}
	}
}
