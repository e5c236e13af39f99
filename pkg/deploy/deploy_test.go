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

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig points a kubeconfig at url, with no credentials.
func writeKubeconfig(t *testing.T, url string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: url}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "x"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// The node agent starts after this component: Start must not wait for the
// Addon API, which a fresh apiserver serves only seconds later, and a
// failure to install it must still end the component.
func TestStartDoesNotWaitForTheAddonAPI(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not serving", http.StatusForbidden)
	}))
	defer api.Close()

	dir := filepath.Join(t.TempDir(), "manifests")
	c := &Controller{
		Dir:        dir,
		Kubeconfig: writeKubeconfig(t, api.URL),
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
