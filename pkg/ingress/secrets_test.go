package ingress

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

// TestControllerCachesOnlyTLSSecrets: the controller asks the API server
// for Secrets of type kubernetes.io/tls only, so no other Secret of the
// cluster is ever held in its memory. The fake clientset ignores field
// selectors; its reactors apply them the way the API server does, so a
// controller that stopped asking would find the Opaque Secrets cached.
func TestControllerCachesOnlyTLSSecrets(t *testing.T) {
	const ns = "shop"
	certPEM, keyPEM := selfSignedPEM(t, "shop.test")
	opaque := func(name string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"password": []byte("hunter2")},
		}
	}
	client := fake.NewClientset(newTLSSecret(ns, "listed-cert", certPEM, keyPEM), opaque("listed-password"))

	var mu sync.Mutex
	var lists, watches []string
	matches := func(selector fields.Selector, obj runtime.Object) bool {
		secret, ok := obj.(*corev1.Secret)
		return ok && selector.Matches(fields.Set{"type": string(secret.Type)})
	}
	secretsGVR := corev1.SchemeGroupVersion.WithResource("secrets")
	client.PrependReactor("list", "secrets", func(action clienttesting.Action) (bool, runtime.Object, error) {
		selector := action.(clienttesting.ListAction).GetListRestrictions().Fields
		mu.Lock()
		lists = append(lists, selector.String())
		mu.Unlock()
		obj, err := client.Tracker().List(secretsGVR, corev1.SchemeGroupVersion.WithKind("Secret"), action.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		list := obj.(*corev1.SecretList)
		kept := list.Items[:0]
		for i := range list.Items {
			if matches(selector, &list.Items[i]) {
				kept = append(kept, list.Items[i])
			}
		}
		list.Items = kept
		return true, list, nil
	})
	client.PrependWatchReactor("secrets", func(action clienttesting.Action) (bool, watch.Interface, error) {
		selector := action.(clienttesting.WatchAction).GetWatchRestrictions().Fields
		mu.Lock()
		watches = append(watches, selector.String())
		mu.Unlock()
		w, err := client.Tracker().Watch(secretsGVR, action.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		return true, watch.Filter(w, func(e watch.Event) (watch.Event, bool) { return e, matches(selector, e.Object) }), nil
	})

	controller, err := NewController(client, Options{IngressClass: "skiff", Recorder: record.NewFakeRecorder(100), Debounce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- controller.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	eventually(t, "caches synced", controller.synced.Load)

	// Created after the listing: these arrive through the watch.
	for _, s := range []*corev1.Secret{opaque("watched-password"), newTLSSecret(ns, "watched-cert", certPEM, keyPEM)} {
		if _, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cached := func(name string) bool {
		_, err := controller.builder.secrets.Secrets(ns).Get(name)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("get %s from the cache: %v", name, err)
		}
		return err == nil
	}
	// The watch delivers in order: once the later TLS Secret is cached, the
	// Opaque one before it has been seen, and must have been dropped.
	eventually(t, "the watched TLS Secret in the cache", func() bool { return cached("watched-cert") })
	if !cached("listed-cert") {
		t.Error("listed TLS Secret not in the cache")
	}
	for _, name := range []string{"listed-password", "watched-password"} {
		if cached(name) {
			t.Errorf("Opaque Secret %s is in the controller's cache", name)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(lists) == 0 || len(watches) == 0 {
		t.Fatalf("secrets listed %d and watched %d times, want both", len(lists), len(watches))
	}
	for _, got := range append(append([]string{}, lists...), watches...) {
		if got != "type=kubernetes.io/tls" {
			t.Errorf("secrets listed or watched with field selector %q, want %q", got, "type=kubernetes.io/tls")
		}
	}
}
