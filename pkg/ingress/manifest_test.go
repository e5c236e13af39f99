package ingress

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
)

// TestDeploymentManifestMatchesTheProgram guards the coupling between the
// manifest and the controller: the pod labels must satisfy the selector
// the pods look for each other with, probes must hit the health port, and
// the role must allow every call the controller makes.
func TestDeploymentManifestMatchesTheProgram(t *testing.T) {
	text, err := os.ReadFile("../../manifests/ingress.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New("ingress").Option("missingkey=error").Parse(string(text))
	if err != nil {
		t.Fatal(err)
	}
	var rendered bytes.Buffer
	if err := tmpl.Execute(&rendered, map[string]string{"IngressImage": "skiff.local/system/ingress:test",
		"ShimGroupAnnotation": "io.containerd.runc.v2.group", "SystemShimGroup": "skiff-system"}); err != nil {
		t.Fatal(err)
	}

	// Strict, so a misspelt field fails here instead of being dropped by
	// the API server.
	decoder := serializerjson.NewSerializerWithOptions(serializerjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		serializerjson.SerializerOptions{Yaml: true, Strict: true})
	var daemonSet *appsv1.DaemonSet
	var role *rbacv1.ClusterRole
	kinds := map[string]bool{}
	for _, doc := range strings.Split(rendered.String(), "\n---\n") {
		obj, gvk, err := decoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode manifest document: %v\n%s", err, doc)
		}
		kinds[gvk.Kind] = true
		switch o := obj.(type) {
		case *appsv1.DaemonSet:
			daemonSet = o
		case *rbacv1.ClusterRole:
			role = o
		}
	}
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "IngressClass", "DaemonSet"} {
		if !kinds[kind] {
			t.Errorf("manifest has no %s", kind)
		}
	}
	if daemonSet == nil || role == nil {
		t.FailNow()
	}

	pod := daemonSet.Spec.Template
	container := pod.Spec.Containers[0]
	if container.Image != "skiff.local/system/ingress:test" || container.ImagePullPolicy != "Never" || !slices.Equal(container.Command, []string{"/skiff-ingress"}) {
		t.Errorf("container image %q pull %q command %v", container.Image, container.ImagePullPolicy, container.Command)
	}
	args := map[string]string{}
	for _, arg := range container.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		args[name] = value
	}
	selector, err := labels.Parse(args["pod-selector"])
	if err != nil || !selector.Matches(labels.Set(pod.Labels)) {
		t.Errorf("--pod-selector %q does not match the pod labels %v", args["pod-selector"], pod.Labels)
	}
	hostPorts := map[string]int32{}
	for _, p := range container.Ports {
		hostPorts[p.Name] = p.HostPort
		if p.HostPort != 0 && p.HostPort != p.ContainerPort {
			t.Errorf("port %s: hostPort %d differs from containerPort %d", p.Name, p.HostPort, p.ContainerPort)
		}
	}
	if args["http-port"] != "80" || args["https-port"] != "443" || hostPorts["http"] != 80 || hostPorts["https"] != 443 {
		t.Errorf("listen ports %v do not match host ports %v", args, hostPorts)
	}
	for _, probe := range []string{container.ReadinessProbe.HTTPGet.Port.String(), container.LivenessProbe.HTTPGet.Port.String()} {
		if probe != args["health-port"] {
			t.Errorf("probe on port %s, health served on %s", probe, args["health-port"])
		}
	}
	if container.Env[0].Name != "POD_NAMESPACE" || container.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE not taken from the downward API: %+v", container.Env)
	}

	allowed := func(group, resource, verb string) bool {
		for _, rule := range role.Rules {
			if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, need := range [][3]string{
		{"networking.k8s.io", "ingresses", "watch"},
		{"networking.k8s.io", "ingressclasses", "watch"},
		{"networking.k8s.io", "ingresses/status", "update"},
		{"", "services", "watch"},
		{"", "secrets", "watch"},
		{"", "pods", "list"},
		{"discovery.k8s.io", "endpointslices", "watch"},
		{"", "events", "create"},
		{"", "events", "patch"},
		{"events.k8s.io", "events", "create"},
	} {
		if !allowed(need[0], need[1], need[2]) {
			t.Errorf("ClusterRole does not allow %s on %s in group %q", need[2], need[1], need[0])
		}
	}
	// Secrets hold the cluster's credentials: the role grants no more on
	// them than the TLS-only informer uses.
	for _, verb := range []string{"get", "create", "update", "patch", "delete", "deletecollection", "*"} {
		if allowed("", "secrets", verb) {
			t.Errorf("ClusterRole allows %s on secrets, which the controller never does", verb)
		}
	}
}
