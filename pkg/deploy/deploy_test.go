package deploy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/pki"
)

// The node agent starts after this component: Start must not wait for the
// Addon API, which a fresh apiserver serves only seconds later, and a
// failure to install it must still end the component.
func TestStartDoesNotWaitForTheAddonAPI(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not serving", http.StatusForbidden)
	}))
	defer api.Close()

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := pki.WriteKubeconfig(kubeconfig, pki.Kubeconfig{Server: api.URL}, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "manifests")
	c := &Controller{
		Dir:        dir,
		Kubeconfig: kubeconfig,
		Namespace:  "kube-system",
		Bundled:    []Bundled{{Name: "coredns", Content: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	done, err := c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Start took %s with no Addon API; it should return at once", took)
	}
	if _, err := os.Stat(filepath.Join(dir, "coredns.yaml")); err != nil {
		t.Errorf("bundled manifest not written before Start returned: %v", err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "Addon") {
			t.Fatalf("component ended with %v, want an error about the Addon API", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the component kept running although the Addon CRD cannot be installed")
	}
}
