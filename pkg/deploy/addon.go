package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// Addon records, one per manifest file, are how users see what the deploy
// controller did: `kubectl get addons -n kube-system`.
var (
	addonGVR = schema.GroupVersionResource{Group: "skiff.io", Version: "v1", Resource: "addons"}
	addonGVK = schema.GroupVersionKind{Group: "skiff.io", Version: "v1", Kind: "Addon"}
)

// Addon states shown in the STATE column.
const (
	stateApplied = "Applied"
	stateFailed  = "Failed"
	stateSkipped = "Skipped"
)

const addonCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: addons.skiff.io
spec:
  group: skiff.io
  names:
    kind: Addon
    listKind: AddonList
    plural: addons
    singular: addon
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {}
      additionalPrinterColumns:
        - name: Source
          type: string
          jsonPath: .spec.source
        - name: State
          type: string
          jsonPath: .status.state
        - name: Objects
          type: integer
          jsonPath: .status.objects
        - name: Message
          type: string
          jsonPath: .status.message
        - name: Age
          type: date
          jsonPath: .metadata.creationTimestamp
      schema:
        openAPIV3Schema:
          type: object
          description: A manifest file of the server's manifests folder, kept applied by skiff.
          properties:
            spec:
              type: object
              properties:
                source:
                  type: string
                  description: Path of the file, relative to <data-dir>/server/manifests.
                checksum:
                  type: string
                  description: sha256 of the file as last read.
            status:
              type: object
              properties:
                state:
                  type: string
                message:
                  type: string
                checksum:
                  type: string
                  description: sha256 of the content last applied successfully.
                objects:
                  type: integer
                gvks:
                  type: array
                  description: Kinds this file created, so objects removed from it are found and deleted.
                  items:
                    type: string
                lastApplied:
                  type: string
                  format: date-time
`

func addonCRDObject() (*unstructured.Unstructured, error) {
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(addonCRD), &obj); err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

// waitForAddonAPI waits until the apiserver serves the Addon kind.
func waitForAddonAPI(ctx context.Context, dc discovery.DiscoveryInterface) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		res, err := dc.ServerResourcesForGroupVersion(addonGVR.GroupVersion().String())
		if err != nil {
			return false, nil
		}
		for _, r := range res.APIResources {
			if r.Name == addonGVR.Resource {
				return true, nil
			}
		}
		return false, nil
	})
}

// addonStatus is the part of an Addon the controller reads back.
type addonStatus struct {
	State, Message, Checksum string
	Objects                  int
	GVKs                     []schema.GroupVersionKind
}

func readStatus(u *unstructured.Unstructured) addonStatus {
	var s addonStatus
	s.State, _, _ = unstructured.NestedString(u.Object, "status", "state")
	s.Message, _, _ = unstructured.NestedString(u.Object, "status", "message")
	s.Checksum, _, _ = unstructured.NestedString(u.Object, "status", "checksum")
	objects, _, _ := unstructured.NestedInt64(u.Object, "status", "objects")
	s.Objects = int(objects)
	gvks, _, _ := unstructured.NestedStringSlice(u.Object, "status", "gvks")
	for _, g := range gvks {
		if gvk, ok := parseGVK(g); ok {
			s.GVKs = append(s.GVKs, gvk)
		}
	}
	return s
}

// formatGVK and parseGVK round-trip "apps/v1/Deployment" and, for the core
// group, "v1/ConfigMap".
func formatGVK(gvk schema.GroupVersionKind) string {
	return gvk.GroupVersion().String() + "/" + gvk.Kind
}

func parseGVK(s string) (schema.GroupVersionKind, bool) {
	i := strings.LastIndex(s, "/")
	if i <= 0 || i == len(s)-1 {
		return schema.GroupVersionKind{}, false
	}
	gv, err := schema.ParseGroupVersion(s[:i])
	if err != nil {
		return schema.GroupVersionKind{}, false
	}
	return gv.WithKind(s[i+1:]), true
}

// addons is the Addon API of one namespace.
type addons struct {
	client    dynamic.NamespaceableResourceInterface
	namespace string
}

func (a *addons) list(ctx context.Context) (map[string]*unstructured.Unstructured, error) {
	list, err := a.client.Namespace(a.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list addons: %w", err)
	}
	out := make(map[string]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		item := &list.Items[i]
		out[item.GetName()] = item
	}
	return out, nil
}

// ensure returns the Addon for f, creating it or updating its spec.
func (a *addons) ensure(ctx context.Context, existing *unstructured.Unstructured, f manifestFile) (*unstructured.Unstructured, error) {
	if existing == nil {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(addonGVK)
		u.SetName(f.Addon)
		u.SetNamespace(a.namespace)
		u.Object["spec"] = map[string]any{"source": f.Rel, "checksum": f.Checksum}
		body, err := json.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("encode addon %s: %w", f.Addon, err)
		}
		// Created by a server-side apply, not a create: the apiserver holds
		// every create of a custom resource for 2 s while its CRD is new
		// (for HA peers to catch up), and on a first start that is when
		// the bundled addons are applied.
		force := true
		created, err := a.client.Namespace(a.namespace).Patch(ctx, f.Addon, types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: "skiff-deploy", Force: &force})
		if err != nil {
			return nil, fmt.Errorf("create addon %s: %w", f.Addon, err)
		}
		return withGVK(created), nil
	}
	source, _, _ := unstructured.NestedString(existing.Object, "spec", "source")
	checksum, _, _ := unstructured.NestedString(existing.Object, "spec", "checksum")
	if source == f.Rel && checksum == f.Checksum {
		return withGVK(existing), nil
	}
	u := existing.DeepCopy()
	u.Object["spec"] = map[string]any{"source": f.Rel, "checksum": f.Checksum}
	updated, err := a.client.Namespace(a.namespace).Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update addon %s: %w", f.Addon, err)
	}
	return withGVK(updated), nil
}

// setStatus records the outcome of an apply.
func (a *addons) setStatus(ctx context.Context, addon *unstructured.Unstructured, state, message, checksum string, objects int, gvks []schema.GroupVersionKind) (*unstructured.Unstructured, error) {
	u := addon.DeepCopy()
	names := make([]any, 0, len(gvks))
	for _, g := range gvks {
		names = append(names, formatGVK(g))
	}
	status := map[string]any{
		"state":   state,
		"message": message,
		"objects": int64(objects),
		"gvks":    names,
	}
	if checksum != "" {
		status["checksum"] = checksum
		status["lastApplied"] = time.Now().UTC().Format(time.RFC3339)
	} else if old, ok, _ := unstructured.NestedFieldCopy(addon.Object, "status", "checksum"); ok {
		status["checksum"] = old
		if last, ok, _ := unstructured.NestedFieldCopy(addon.Object, "status", "lastApplied"); ok {
			status["lastApplied"] = last
		}
	}
	u.Object["status"] = status
	updated, err := a.client.Namespace(a.namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of addon %s: %w", addon.GetName(), err)
	}
	return withGVK(updated), nil
}

func (a *addons) delete(ctx context.Context, name string) error {
	err := a.client.Namespace(a.namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete addon %s: %w", name, err)
	}
	return nil
}

// withGVK makes sure the object names its kind, which wrangler and event
// references read from the object itself.
func withGVK(u *unstructured.Unstructured) *unstructured.Unstructured {
	u.SetGroupVersionKind(addonGVK)
	return u
}
