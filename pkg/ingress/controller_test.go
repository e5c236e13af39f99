package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func eventually(t *testing.T, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// requestVia sends a GET for host and path to addr and returns status and
// body, or status 0 when the request failed.
func requestVia(client *http.Client, scheme, addr, host, path string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestControllerServesIngressesAndFollowsChanges(t *testing.T) {
	const ns = "shop"
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	blue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "blue")
	}))
	defer blue.Close()
	defer close(release)
	green := nameServer(t, "green", nil)

	certPEM, keyPEM := selfSignedPEM(t, "shop.test")
	defaultClass := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff", Annotations: map[string]string{defaultClassAnnotation: "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: "skiff.io/ingress"},
	}
	site := newIngress(ns, "site", testTime, httpRule("shop.test",
		testPath{"/", networkingv1.PathTypePrefix, serviceBackend("blue", 80)}))
	site.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"shop.test"}, SecretName: "shop-tls"}}
	foreign := newIngress(ns, "foreign", testTime, httpRule("other.test",
		testPath{"/", networkingv1.PathTypePrefix, serviceBackend("blue", 80)}))
	foreign.Spec.IngressClassName = ptr("nginx")

	client := fake.NewClientset(
		defaultClass, site, foreign,
		newTLSSecret(ns, "shop-tls", certPEM, keyPEM),
		// Named target ports: the slices carry the resolved numbers.
		newService(ns, "blue", servicePort("http", 80, intstr.FromString("web"))),
		sliceForAddress(t, ns, "blue-1", "blue", "http", endpointOf(blue)),
		newService(ns, "green", servicePort("http", 80, intstr.FromString("web"))),
		sliceForAddress(t, ns, "green-1", "green", "http", endpointOf(green)),
		controllerPod("ingress-b", "10.0.0.2", true, controllerLabels),
		controllerPod("ingress-a", "10.0.0.1", true, controllerLabels),
		controllerPod("ingress-c", "10.0.0.3", false, controllerLabels),
		controllerPod("dns", "10.0.0.99", true, map[string]string{"k8s-app": "dns"}),
	)
	recorder := record.NewFakeRecorder(100)
	controller, err := NewController(client, Options{
		IngressClass: "skiff",
		PodNamespace: "kube-system",
		PodSelector:  labels.SelectorFromSet(controllerLabels),
		Recorder:     recorder,
		Debounce:     10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	servers := Servers{
		HTTP: listen(t), HTTPS: listen(t), Health: listen(t),
		Proxy:     controller.Proxy(),
		TLSConfig: controller.TLSConfig(),
		Healthz:   controller.Healthz(),
	}
	httpAddr, httpsAddr := servers.HTTP.Addr().String(), servers.HTTPS.Addr().String()
	healthURL := "http://" + servers.Health.Addr().String() + "/healthz"
	controllerDone, serversDone := make(chan error, 1), make(chan error, 1)
	go func() { serversDone <- servers.Run(ctx) }()
	if resp, err := http.Get(healthURL); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("health before sync: %v %v, want 503", resp, err)
	}
	go func() { controllerDone <- controller.Run(ctx) }()
	eventually(t, "healthz to report synced", func() bool {
		resp, err := http.Get(healthURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	plain := &http.Client{Timeout: 10 * time.Second}
	if status, body := requestVia(plain, "http", httpAddr, "shop.test", "/"); status != http.StatusOK || body != "blue" {
		t.Fatalf("shop.test: %d %q, want blue", status, body)
	}
	if status, _ := requestVia(plain, "http", httpAddr, "other.test", "/"); status != http.StatusNotFound {
		t.Errorf("ingress of another class served: status %d", status)
	}

	// HTTPS with the Secret's certificate chosen by SNI, over HTTP/2.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	secure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{ServerName: "shop.test", RootCAs: roots},
		ForceAttemptHTTP2: true,
	}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+httpsAddr+"/", nil)
	req.Host = "shop.test"
	resp, err := secure.Do(req)
	if err != nil {
		t.Fatalf("https request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "blue" {
		t.Errorf("https: proto %s body %q, want HTTP/2 and blue", resp.Proto, body)
	}

	// Status: the nodes of the ready controller pods, sorted.
	wantStatus := []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}
	eventually(t, "ingress status", func() bool {
		ing, err := client.NetworkingV1().Ingresses(ns).Get(ctx, "site", metav1.GetOptions{})
		return err == nil && reflect.DeepEqual(ing.Status.LoadBalancer.Ingress, wantStatus)
	})
	if ing, _ := client.NetworkingV1().Ingresses(ns).Get(ctx, "foreign", metav1.GetOptions{}); len(ing.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("status written on an ingress of another class: %v", ing.Status.LoadBalancer.Ingress)
	}

	// A request in flight on the old route survives the route changing
	// under it.
	inFlight := make(chan string, 1)
	go func() {
		status, body := requestVia(plain, "http", httpAddr, "shop.test", "/slow")
		inFlight <- fmt.Sprintf("%d %s", status, body)
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("slow request never reached the backend")
	}
	updateIngress(t, ctx, client, ns, "site", func(ing *networkingv1.Ingress) {
		ing.Spec.Rules[0].HTTP.Paths[0].Backend = serviceBackend("green", 80)
		ing.Spec.Rules = append(ing.Spec.Rules, httpRule("broken.test",
			testPath{"/", networkingv1.PathTypePrefix, serviceBackend("ghost", 80)}))
	})
	eventually(t, "the route to switch to green", func() bool {
		_, body := requestVia(plain, "http", httpAddr, "shop.test", "/")
		return body == "green"
	})
	release <- struct{}{}
	select {
	case got := <-inFlight:
		if got != "200 blue" {
			t.Errorf("in-flight request ended with %q, want 200 blue", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request never finished")
	}
	if status, body := requestVia(plain, "http", httpAddr, "broken.test", "/"); status != http.StatusServiceUnavailable {
		t.Errorf("route to a missing service: %d %q, want 503", status, body)
	}

	// Rebuild a few more times; the missing Service is still missing, and
	// neither its Event nor the unchanged status is written again.
	statusWrites := countStatusUpdates(client, "site")
	for i := range 3 {
		host := fmt.Sprintf("probe-%d.test", i)
		updateIngress(t, ctx, client, ns, "site", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules = append(ing.Spec.Rules, httpRule(host,
				testPath{"/", networkingv1.PathTypePrefix, serviceBackend("green", 80)}))
		})
		eventually(t, host+" to be routed", func() bool {
			status, _ := requestVia(plain, "http", httpAddr, host, "/")
			return status == http.StatusOK
		})
	}
	var ghostEvents []string
	for _, e := range drainEvents(recorder) {
		if strings.Contains(e, "ghost") {
			ghostEvents = append(ghostEvents, e)
		}
	}
	if len(ghostEvents) != 1 || ghostEvents[0] != "Warning ServiceNotFound Service shop/ghost not found" {
		t.Errorf("events about the missing service = %q, want exactly one warning", ghostEvents)
	}
	if again := countStatusUpdates(client, "site"); again != statusWrites {
		t.Errorf("unchanged status written again: %d updates, was %d", again, statusWrites)
	}

	cancel()
	for name, done := range map[string]chan error{"controller": controllerDone, "servers": serversDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s stopped with %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop", name)
		}
	}
}

// updateIngress applies change to the stored Ingress, starting from its
// current version so that the status already written is kept.
func updateIngress(t *testing.T, ctx context.Context, client *fake.Clientset, namespace, name string, change func(*networkingv1.Ingress)) {
	t.Helper()
	ing, err := client.NetworkingV1().Ingresses(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	change(ing)
	if _, err := client.NetworkingV1().Ingresses(namespace).Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func countStatusUpdates(client *fake.Clientset, name string) int {
	n := 0
	for _, action := range client.Actions() {
		if action.GetVerb() == "update" && action.GetSubresource() == "status" && action.GetResource().Resource == "ingresses" {
			if ing, ok := action.(clienttesting.UpdateAction).GetObject().(*networkingv1.Ingress); ok && ing.Name == name {
				n++
			}
		}
	}
	return n
}
