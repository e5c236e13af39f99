// Package manifests holds the bundled addon manifests (CoreDNS, the ingress
// controller, local storage, metrics-server, the runtime classes, the
// policy that keeps the addons' shim group to kube-system) as templates,
// and renders them with the cluster's settings for the deploy controller
// to write and apply.
package manifests

import (
	"bytes"
	"embed"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/template"
)

//go:embed *.yaml
var files embed.FS

// Values are what the templates may refer to.
type Values struct {
	ClusterDNS         string // the kube-dns Service IP
	ClusterDomain      string
	CoreDNSImage       string
	IngressImage       string
	LocalPathImage     string
	MetricsServerImage string
	// StoragePath is the directory local-path volumes are made in.
	StoragePath string
	// MetricsServerCert and MetricsServerKey are metrics-server's serving
	// certificate and key, AddonServingCA the CA its APIService trusts and
	// KubeletCA the bundle kubelets' serving certificates verify with; all
	// PEM, base64-encoded.
	MetricsServerCert, MetricsServerKey string
	AddonServingCA, KubeletCA           string
	// ShimGroupAnnotation is the pod annotation that puts pods into one
	// containerd shim of their node, and SystemShimGroup the group of the
	// addons' pods.
	ShimGroupAnnotation, SystemShimGroup string
}

// ServiceLB is the name --disable turns off the ServiceLB controller by, as
// in k3s. The controller runs inside the server, from no manifest.
const ServiceLB = "servicelb"

// Addons lists the names --disable takes for what skiff bundles: the
// manifests and ServiceLB.
func Addons() []string {
	return slices.Sorted(slices.Values(append(Names(), ServiceLB)))
}

// Names lists the bundled manifests, e.g. "coredns", "ingress".
func Names() []string {
	entries, err := files.ReadDir(".")
	if err != nil {
		panic(err) // embedded at build time; cannot fail at run time
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Render returns the manifest of one bundled addon filled with v.
func Render(name string, v Values) ([]byte, error) {
	text, err := files.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no bundled manifest %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	tmpl, err := template.New(name).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("parse bundled manifest %s: %w", name, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, v); err != nil {
		return nil, fmt.Errorf("render bundled manifest %s: %w", name, err)
	}
	return out.Bytes(), nil
}
