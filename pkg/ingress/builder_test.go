package ingress

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// newTestBuilder returns a builder whose listers hold objs.
func newTestBuilder(t *testing.T, objs ...runtime.Object) *configBuilder {
	t.Helper()
	newIndexer := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	services, slices, secrets := newIndexer(), newIndexer(), newIndexer()
	for _, obj := range objs {
		var err error
		switch obj.(type) {
		case *corev1.Service:
			err = services.Add(obj)
		case *discoveryv1.EndpointSlice:
			err = slices.Add(obj)
		case *corev1.Secret:
			err = secrets.Add(obj)
		default:
			t.Fatalf("unexpected object %T", obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return newConfigBuilder(corelisters.NewServiceLister(services), discoverylisters.NewEndpointSliceLister(slices), corelisters.NewSecretLister(secrets))
}

func TestBuildResolvesServicePortsToEndpointSlicePorts(t *testing.T) {
	prefix := networkingv1.PathTypePrefix
	svc := newService("shop", "web",
		servicePort("http", 80, intstr.FromString("http-alt")),
		servicePort("admin", 9000, intstr.FromInt32(9001)))
	builder := newTestBuilder(t, svc,
		// Two slices of the Service, as the EndpointSlice controller
		// creates them: ports named after the Service ports, target ports
		// already resolved to numbers.
		newEndpointSlice("shop", "web-a", "web", "http", 8080,
			testEndpoint{ip: "10.1.0.2"}, testEndpoint{ip: "10.1.0.1", ready: ptr(true)}, testEndpoint{ip: "10.1.0.9", ready: ptr(false)}),
		newEndpointSlice("shop", "web-b", "web", "http", 8080, testEndpoint{ip: "10.1.0.3"}, testEndpoint{ip: "10.1.0.1"}),
		newEndpointSlice("shop", "web-admin", "web", "admin", 9001, testEndpoint{ip: "10.1.0.1"}),
		// A slice of another Service and one in another namespace must not leak in.
		newEndpointSlice("shop", "other", "other", "http", 8080, testEndpoint{ip: "10.9.0.1"}),
		newEndpointSlice("elsewhere", "web-x", "web", "http", 8080, testEndpoint{ip: "10.8.0.1"}),
	)
	ing := newIngress("shop", "site", testTime,
		httpRule("shop.test",
			testPath{"/", prefix, serviceBackend("web", 80)},
			testPath{"/named", prefix, namedPortBackend("web", "http")},
			testPath{"/admin", prefix, namedPortBackend("web", "admin")}))

	config, problems := builder.build([]*networkingv1.Ingress{ing})
	if len(problems) != 0 {
		t.Fatalf("unexpected problems: %+v", problems)
	}
	wantWeb := []string{"10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"}
	for _, path := range []string{"/", "/named"} {
		if got := config.routes.Match("shop.test", path).Endpoints; !reflect.DeepEqual(got, wantWeb) {
			t.Errorf("endpoints for %s = %v, want %v", path, got, wantWeb)
		}
	}
	if got := config.routes.Match("shop.test", "/admin").Endpoints; !reflect.DeepEqual(got, []string{"10.1.0.1:9001"}) {
		t.Errorf("admin endpoints = %v", got)
	}
}

func TestBuildReportsMissingServicesAndPorts(t *testing.T) {
	prefix := networkingv1.PathTypePrefix
	builder := newTestBuilder(t, newService("default", "web", servicePort("http", 80, intstr.FromInt32(8080))))
	ing := newIngress("default", "site", testTime,
		httpRule("a.test",
			testPath{"/ghost", prefix, serviceBackend("ghost", 80)},
			testPath{"/ghost-again", prefix, serviceBackend("ghost", 80)},
			testPath{"/wrong-port", prefix, serviceBackend("web", 81)},
			testPath{"/no-endpoints", prefix, serviceBackend("web", 80)}))

	config, problems := builder.build([]*networkingv1.Ingress{ing})
	got := map[string]string{}
	for _, p := range problems {
		got[p.Message] = p.Reason
	}
	want := map[string]string{
		"Service default/ghost not found":    "ServiceNotFound",
		"Service default/web has no port 81": "ServicePortNotFound",
	}
	if !reflect.DeepEqual(got, want) || len(problems) != 2 {
		t.Errorf("problems = %+v, want %v once each", problems, want)
	}
	// Broken backends still own their paths and answer 503 rather than
	// falling through to another rule.
	for _, path := range []string{"/ghost", "/wrong-port", "/no-endpoints"} {
		backend := config.routes.Match("a.test", path)
		if backend == nil || len(backend.Endpoints) != 0 {
			t.Errorf("%s: backend = %+v, want one without endpoints", path, backend)
		}
	}
}

func TestBuildUsesOldestDefaultBackend(t *testing.T) {
	builder := newTestBuilder(t,
		newService("a", "old", servicePort("", 80, intstr.FromInt32(80))),
		newService("b", "new", servicePort("", 80, intstr.FromInt32(80))))
	older := newIngress("a", "older", testTime)
	older.Spec.DefaultBackend = ptr(serviceBackend("old", 80))
	newer := newIngress("b", "newer", testTime.Add(time.Minute))
	newer.Spec.DefaultBackend = ptr(serviceBackend("new", 80))

	config, _ := builder.build([]*networkingv1.Ingress{older, newer})
	if got := config.routes.Match("x.test", "/"); got == nil || got.Service != "a/old:80" {
		t.Fatalf("default backend = %+v, want a/old:80", got)
	}
}

func TestBuildKeepsRoundRobinPositionAcrossRebuilds(t *testing.T) {
	builder := newTestBuilder(t,
		newService("default", "web", servicePort("", 80, intstr.FromInt32(80))),
		newEndpointSlice("default", "web", "web", "", 80, testEndpoint{ip: "10.0.0.1"}, testEndpoint{ip: "10.0.0.2"}))
	ing := newIngress("default", "site", testTime, httpRule("", testPath{"/", networkingv1.PathTypePrefix, serviceBackend("web", 80)}))

	first, _ := builder.build([]*networkingv1.Ingress{ing})
	if got := first.routes.Match("x", "/").attemptOrder()[0]; got != "10.0.0.1:80" {
		t.Fatalf("first pick = %s", got)
	}
	second, _ := builder.build([]*networkingv1.Ingress{ing})
	if got := second.routes.Match("x", "/").attemptOrder()[0]; got != "10.0.0.2:80" {
		t.Errorf("pick after rebuild = %s, want the rotation to continue at 10.0.0.2:80", got)
	}
}

func TestBuildReportsBadTLSSecrets(t *testing.T) {
	certPEM, keyPEM := selfSignedPEM(t, "good.test")
	opaque := newTLSSecret("default", "opaque", certPEM, keyPEM)
	opaque.Type = corev1.SecretTypeOpaque
	builder := newTestBuilder(t,
		newTLSSecret("default", "good", certPEM, keyPEM),
		newTLSSecret("default", "garbage", []byte("not a certificate"), keyPEM),
		opaque)
	ing := newIngress("default", "site", testTime)
	ing.Spec.TLS = []networkingv1.IngressTLS{
		{Hosts: []string{"good.test"}, SecretName: "good"},
		{Hosts: []string{"missing.test"}, SecretName: "missing"},
		{Hosts: []string{"garbage.test"}, SecretName: "garbage"},
		{Hosts: []string{"opaque.test"}, SecretName: "opaque"},
	}

	config, problems := builder.build([]*networkingv1.Ingress{ing})
	want := []problem{
		{Reason: "TLSSecretNotFound", Message: "TLS Secret default/missing not found"},
		{Reason: "InvalidTLSSecret", Message: "default/garbage does not hold a valid TLS key pair"},
		{Reason: "InvalidTLSSecret", Message: `Secret default/opaque is of type "Opaque", not "kubernetes.io/tls"`},
	}
	if len(problems) != len(want) {
		t.Fatalf("problems = %+v, want %d", problems, len(want))
	}
	for i, w := range want {
		if problems[i].Reason != w.Reason || !strings.Contains(problems[i].Message, w.Message) {
			t.Errorf("problem %d = %+v, want %s containing %q", i, problems[i].Problem, w.Reason, w.Message)
		}
	}
	if config.certificates.lookup("good.test") == nil {
		t.Error("valid secret not served")
	}
	for _, host := range []string{"missing.test", "garbage.test", "opaque.test"} {
		if config.certificates.lookup(host) != nil {
			t.Errorf("certificate served for %s from an invalid secret", host)
		}
	}
}

func TestBuildReparsesChangedSecret(t *testing.T) {
	oldCert, oldKey := selfSignedPEM(t, "site.test")
	newCert, newKey := selfSignedPEM(t, "site.test")
	secret := newTLSSecret("default", "site", oldCert, oldKey)
	builder := newTestBuilder(t, secret)
	ing := newIngress("default", "site", testTime)
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"site.test"}, SecretName: "site"}}

	first, _ := builder.build([]*networkingv1.Ingress{ing})
	secret.Data = map[string][]byte{corev1.TLSCertKey: newCert, corev1.TLSPrivateKeyKey: newKey}
	second, _ := builder.build([]*networkingv1.Ingress{ing})

	if first.certificates.lookup("site.test") == second.certificates.lookup("site.test") {
		t.Fatal("certificate not replaced after the secret changed")
	}
	third, _ := builder.build([]*networkingv1.Ingress{ing})
	if second.certificates.lookup("site.test") != third.certificates.lookup("site.test") {
		t.Error("unchanged secret parsed again")
	}
}
