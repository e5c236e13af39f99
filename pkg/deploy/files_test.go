package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-io/skiff/manifests"
)

func TestParseObjectsMultiDocumentAndLists(t *testing.T) {
	content := `
# a comment-only document is skipped
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: one
---
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Secret
    metadata: {name: two}
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: three, namespace: web}
`
	objs, err := parseObjects([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		u := o.(*unstructured.Unstructured)
		got = append(got, u.GetKind()+"/"+u.GetName())
	}
	if want := "ConfigMap/one Secret/two Deployment/three"; strings.Join(got, " ") != want {
		t.Fatalf("objects = %v, want %s", got, want)
	}
}

func TestParseObjectsJSON(t *testing.T) {
	objs, err := parseObjects([]byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"json"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].(*unstructured.Unstructured).GetName() != "json" {
		t.Fatalf("objects = %v", objs)
	}
}

func TestParseObjectsRejectsBadDocuments(t *testing.T) {
	for name, content := range map[string]string{
		"malformed yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [name: x\n",
		"no kind":        "apiVersion: v1\nmetadata: {name: x}\n",
		"no apiVersion":  "kind: ConfigMap\nmetadata: {name: x}\n",
		"no name":        "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
		"second bad":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\nkind: ConfigMap\n",
	} {
		if _, err := parseObjects([]byte(content)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

func TestAddonName(t *testing.T) {
	for rel, want := range map[string]string{
		"coredns.yaml":     "coredns",
		"apps/Web_App.yml": "apps-web-app",
		"x.json":           "x",
	} {
		if got := addonName(rel); got != want {
			t.Errorf("addonName(%q) = %q, want %q", rel, got, want)
		}
	}
	long := strings.Repeat("a", 80) + ".yaml"
	for rel, prefix := range map[string]string{"--.yaml": "manifest-", long: strings.Repeat("a", 54) + "-"} {
		got := addonName(rel)
		if !strings.HasPrefix(got, prefix) || len(got) > 63 || strings.Trim(got, "-.") != got {
			t.Errorf("addonName(%q) = %q, want a valid name starting %q", rel, got, prefix)
		}
	}
	if addonName(long) == addonName(strings.Repeat("a", 81)+".yaml") {
		t.Error("two long names collide")
	}
}

func TestScanDirFindsManifestsOnly(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", "b")
	write("a.json", "a")
	write("sub/c.yml", "c")
	write("b.yaml.skip", "")
	write("notes.txt", "x")
	write(".hidden.yaml", "x")
	write(".git/d.yaml", "x")
	files, err := scanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Rel+"="+f.Addon)
	}
	if want := "a.json=a b.yaml=b sub/c.yml=sub-c"; strings.Join(got, " ") != want {
		t.Fatalf("files = %v, want %s", got, want)
	}
	if files[0].Checksum == files[1].Checksum {
		t.Fatal("different contents have the same checksum")
	}
	// b.yaml.skip is a marker, not a manifest: it says not to deploy b.yaml.
	for _, f := range files {
		if f.Skipped != (f.Rel == "b.yaml") {
			t.Errorf("%s: skipped %v", f.Rel, f.Skipped)
		}
	}
}

func TestDisabledNamesAFileByItsBaseNameOrAddon(t *testing.T) {
	f := manifestFile{Rel: "apps/web.yaml", Addon: "apps-web"}
	for _, disabled := range [][]string{{"web"}, {"apps-web"}, {"coredns", "web"}} {
		if !f.disabledBy(disabled) {
			t.Errorf("--disable %v does not disable %s", disabled, f.Rel)
		}
	}
	for _, disabled := range [][]string{nil, {"apps"}, {"web.yaml"}, {"we"}} {
		if f.disabledBy(disabled) {
			t.Errorf("--disable %v disables %s", disabled, f.Rel)
		}
	}
}

func TestWriteBundled(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	bundled := []Bundled{{Name: "coredns", Content: []byte("v1")}, {Name: "ingress", Content: []byte("v1")}}
	if err := writeBundled(dir, bundled); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"coredns.yaml", "ingress.yaml"} {
		b, err := os.ReadFile(path(name))
		if err != nil || string(b) != "v1" {
			t.Fatalf("%s = %q, %v", name, b, err)
		}
		if fi, _ := os.Stat(path(name)); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}

	// An upgrade rewrites the file, unless the user asked to keep theirs:
	// with ingress.yaml.keep, or with ingress.skip, its older name. A
	// ".yaml.skip" (do not deploy) does not stop the rewrite.
	if err := os.WriteFile(path("ingress.yaml"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path("ingress.yaml.keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path("coredns.yaml.skip"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bundled[0].Content, bundled[1].Content = []byte("v2"), []byte("v2")
	if err := writeBundled(dir, bundled); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path("coredns.yaml")); string(b) != "v2" {
		t.Fatalf("coredns.yaml = %q after upgrade, want v2", b)
	}
	if b, _ := os.ReadFile(path("ingress.yaml")); string(b) != "mine" {
		t.Fatalf("ingress.yaml = %q, want the user's copy kept", b)
	}
	if err := os.Rename(path("ingress.yaml.keep"), path("ingress.skip")); err != nil {
		t.Fatal(err)
	}
	bundled[1].Content = []byte("v3")
	if err := writeBundled(dir, bundled); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path("ingress.yaml")); string(b) != "mine" {
		t.Fatalf("ingress.yaml = %q with the old marker ingress.skip, want the user's copy kept", b)
	}

	// Disabling removes the file (its objects are then pruned).
	bundled[0].Disabled = true
	if err := writeBundled(dir, bundled); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path("coredns.yaml")); !os.IsNotExist(err) {
		t.Fatalf("disabled coredns.yaml still there: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
}

func TestGVKRoundTrip(t *testing.T) {
	for _, gvk := range []schema.GroupVersionKind{
		{Version: "v1", Kind: "ConfigMap"},
		{Group: "apps", Version: "v1", Kind: "Deployment"},
		{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	} {
		got, ok := parseGVK(formatGVK(gvk))
		if !ok || got != gvk {
			t.Errorf("round trip of %v gave %v, %v", gvk, got, ok)
		}
	}
	for _, bad := range []string{"", "Deployment", "apps/v1/", "/x"} {
		if _, ok := parseGVK(bad); ok {
			t.Errorf("parseGVK(%q) accepted", bad)
		}
	}
}

var testValues = manifests.Values{
	ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local",
	CoreDNSImage: "skiff.local/system/coredns:test", IngressImage: "skiff.local/system/ingress:test",
	LocalPathImage: "skiff.local/system/local-path:test", MetricsServerImage: "skiff.local/system/metrics-server:test",
	StoragePath:       `/var/lib/skiff "quoted"/storage`,
	MetricsServerCert: "Y2VydA==", MetricsServerKey: "a2V5", AddonServingCA: "Y2E=", KubeletCA: "a3ViZWxldC1jYQ==",
	ShimGroupAnnotation: "io.containerd.runc.v2.group", SystemShimGroup: "skiff-system",
}

// The local-path provisioner reads its node paths from JSON in a
// ConfigMap: a path that needs escaping must stay one path.
func TestLocalStorageConfigIsJSON(t *testing.T) {
	out, err := manifests.Render("local-storage", testValues)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := parseObjects(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		o, ok := obj.(*unstructured.Unstructured)
		if !ok || o.GetKind() != "ConfigMap" {
			continue
		}
		data, _, _ := unstructured.NestedStringMap(o.Object, "data")
		var cfg struct {
			NodePathMap []struct {
				Node  string   `json:"node"`
				Paths []string `json:"paths"`
			} `json:"nodePathMap"`
			SetupCommand string `json:"setupCommand"`
		}
		if err := json.Unmarshal([]byte(data["config.json"]), &cfg); err != nil {
			t.Fatalf("config.json: %v\n%s", err, data["config.json"])
		}
		if len(cfg.NodePathMap) != 1 || !slices.Equal(cfg.NodePathMap[0].Paths, []string{testValues.StoragePath}) || cfg.SetupCommand != "/skiff-volume-helper" {
			t.Fatalf("config.json = %+v", cfg)
		}
		return
	}
	t.Fatal("no ConfigMap in local-storage")
}

// The bundled templates must render into valid objects for any cluster.
func TestBundledManifestsRender(t *testing.T) {
	names := manifests.Names()
	if len(names) == 0 {
		t.Fatal("no bundled manifests")
	}
	for _, name := range names {
		out, err := manifests.Render(name, testValues)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		objs, err := parseObjects(out)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(objs) == 0 {
			t.Fatalf("%s renders no objects", name)
		}
		if strings.Contains(string(out), "<no value>") {
			t.Fatalf("%s has an unfilled template value", name)
		}
	}
	if _, err := manifests.Render("nope", manifests.Values{}); err == nil {
		t.Fatal("unknown manifest rendered")
	}
}

func TestAddonCRDParses(t *testing.T) {
	crd, err := addonCRDObject()
	if err != nil {
		t.Fatal(err)
	}
	if crd.GetName() != addonGVR.Resource+"."+addonGVR.Group || crd.GetKind() != "CustomResourceDefinition" {
		t.Fatalf("CRD = %s %s", crd.GetKind(), crd.GetName())
	}
}
