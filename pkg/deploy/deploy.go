// Package deploy keeps the manifests in the server's manifests folder
// applied to the cluster: the bundled addons (written there from the
// binary) and whatever the user drops in. Each file is one object set for
// wrangler's apply, so an object removed from a file, or a removed file,
// is deleted from the cluster.
package deploy

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rancher/wrangler/v3/pkg/apply"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// Timing of the controller: a change in the folder is applied after a short
// quiet period; every resync re-reads the folder (catching anything the
// watch missed), and every driftEvery-th resync re-applies unchanged files
// too, so objects edited or deleted behind skiff's back come back.
const (
	debounce   = 500 * time.Millisecond
	resync     = 15 * time.Second
	driftEvery = 4
)

// Controller is the deploy component of a server.
type Controller struct {
	Dir        string // <data-dir>/server/manifests
	Kubeconfig string // admin credentials
	Namespace  string // where Addon records live
	Bundled    []Bundled
	// Disabled names files of the folder not to deploy (--disable): their
	// objects are deleted, the files stay.
	Disabled []string

	apply    apply.Apply
	addons   *addons
	recorder record.EventRecorder

	mu sync.Mutex
	// lastEvent remembers the last event per addon so a file that keeps
	// failing the same way is reported once, not at every resync.
	lastEvent map[string]string
}

func (c *Controller) Name() string { return "deploy" }

// UpdateBundled rewrites the bundled manifests that changed while the
// server runs (a renewed certificate an addon carries); the folder's
// watcher applies them.
func (c *Controller) UpdateBundled(bundled []Bundled) error {
	return writeBundled(c.Dir, bundled)
}

// Start writes the bundled manifests and returns. In the background it
// installs the Addon API, applies the whole folder once and then keeps it
// applied until ctx is cancelled; failing to install the Addon API ends
// the component with that error.
func (c *Controller) Start(ctx context.Context) (<-chan error, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create manifests folder %s: %w", c.Dir, err)
	}
	if err := writeBundled(c.Dir, c.Bundled); err != nil {
		return nil, err
	}
	cfg, err := kubeclient.Config(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("event client: %w", err)
	}
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "skiff-deploy"})
	c.lastEvent = map[string]string{}

	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", c.Dir, err)
	}
	if err := watcher.Add(c.Dir); err != nil {
		watcher.Close()
		return nil, fmt.Errorf("watch %s: %w", c.Dir, err)
	}

	// The Addon API takes a few seconds to be served on a fresh cluster.
	// Nothing else waits for the addons, so the components after this one
	// (the node agent above all) start meanwhile.
	done := make(chan error, 1)
	go func() {
		defer close(done)
		defer broadcaster.Shutdown()
		defer watcher.Close()
		if err := c.connect(ctx, cfg); err != nil {
			if ctx.Err() == nil {
				done <- err
			}
			return
		}
		c.sync(ctx, true)
		c.loop(ctx, watcher)
	}()
	return done, nil
}

// connect builds the apply machinery and makes sure the Addon API exists.
func (c *Controller) connect(ctx context.Context, cfg *rest.Config) error {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 100
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	// The rate limit wrangler applies per object set by default would slow
	// a folder of many files to a crawl on start; the apiserver is local.
	c.apply = apply.New(dc, apply.NewClientFactory(cfg)).WithDynamicLookup().WithRateLimiting(100)
	crd, err := addonCRDObject()
	if err != nil {
		return fmt.Errorf("parse the Addon CRD: %w", err)
	}
	if err := c.apply.WithContext(ctx).WithSetID("skiff-deploy-crds").ApplyObjects(crd); err != nil {
		return fmt.Errorf("install the Addon CRD: %w", err)
	}
	if err := waitForAddonAPI(ctx, dc); err != nil {
		return fmt.Errorf("wait for the Addon API (addons.skiff.io): %w", err)
	}
	c.addons = &addons{client: dyn.Resource(addonGVR), namespace: c.Namespace}
	return nil
}

func (c *Controller) loop(ctx context.Context, watcher *fsnotify.Watcher) {
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	var pending <-chan time.Time
	ticks := 0
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-watcher.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			pending = time.After(debounce)
		case err, ok := <-watcher.Errors:
			if !ok {
				return
			}
			logrus.Warnf("watch %s: %v; changes are picked up at the next resync", c.Dir, err)
		case <-pending:
			pending = nil
			c.sync(ctx, false)
		case <-ticker.C:
			ticks++
			c.sync(ctx, ticks%driftEvery == 0)
		}
	}
}

// sync applies every file whose content changed since it was last applied
// (all of them with force), and removes what vanished from the folder.
func (c *Controller) sync(ctx context.Context, force bool) {
	files, err := scanDir(c.Dir)
	if err != nil {
		logrus.Errorf("read manifests folder %s: %v", c.Dir, err)
		return
	}
	existing, err := c.addons.list(ctx)
	if err != nil {
		if ctx.Err() == nil {
			logrus.Warnf("deploy: %v; retrying at the next resync", err)
		}
		return
	}
	seen := map[string]bool{}
	for _, f := range files {
		if f.disabledBy(c.Disabled) {
			continue // pruned below, as if the file were gone
		}
		if seen[f.Addon] {
			logrus.Warnf("manifest %s maps to the addon name %s like another file; rename one of them", f.Rel, f.Addon)
			continue
		}
		seen[f.Addon] = true
		if f.Skipped {
			c.skip(ctx, existing[f.Addon], f)
			continue
		}
		c.applyFile(ctx, existing[f.Addon], f, force)
	}
	for name, addon := range existing {
		if !seen[name] {
			c.remove(ctx, addon)
		}
	}
}

func (c *Controller) applyFile(ctx context.Context, existing *unstructured.Unstructured, f manifestFile, force bool) {
	if existing != nil && !force {
		st := readStatus(existing)
		if st.State == stateApplied && st.Checksum == f.Checksum {
			return
		}
	}
	addon, err := c.addons.ensure(ctx, existing, f)
	if err != nil {
		logrus.Warnf("deploy %s: %v", f.Rel, err)
		return
	}
	prev := readStatus(addon)

	objs, err := parseObjects(f.Content)
	if err != nil {
		// Keep what the last good version of the file created.
		c.fail(ctx, addon, prev, "ParseFailed", fmt.Sprintf("cannot parse %s: %v", f.Rel, err))
		return
	}
	gvks := objectGVKs(objs)
	err = c.apply.WithContext(ctx).WithOwner(addon).WithGVK(prev.GVKs...).ApplyObjects(objs...)
	if err != nil {
		prev.GVKs = unionGVKs(prev.GVKs, gvks)
		c.fail(ctx, addon, prev, "ApplyFailed", fmt.Sprintf("apply %s: %v", f.Rel, err))
		return
	}
	if _, err := c.addons.setStatus(ctx, addon, stateApplied, "", f.Checksum, len(objs), gvks); err != nil {
		logrus.Warnf("deploy %s: %v", f.Rel, err)
	}
	if prev.Checksum != f.Checksum || prev.State != stateApplied {
		logrus.Infof("applied %s (%d objects)", f.Rel, len(objs))
		c.event(addon, corev1.EventTypeNormal, "Applied", fmt.Sprintf("applied %s: %d objects", f.Rel, len(objs)))
	}
}

// skip leaves a file with a .skip marker undeployed: nothing is applied and
// nothing it created before is deleted; its Addon, if any, says so.
func (c *Controller) skip(ctx context.Context, existing *unstructured.Unstructured, f manifestFile) {
	message := fmt.Sprintf("%s%s exists: not deployed", f.Rel, skipSuffix)
	if existing == nil {
		c.mu.Lock()
		first := c.lastEvent["skip/"+f.Addon] == ""
		c.lastEvent["skip/"+f.Addon] = message
		c.mu.Unlock()
		if first {
			logrus.Infof("manifest %s", message)
		}
		return
	}
	prev := readStatus(existing)
	if prev.State == stateSkipped {
		return
	}
	logrus.Infof("manifest %s; what it created stays until the file is removed", message)
	if _, err := c.addons.setStatus(ctx, existing, stateSkipped, message, prev.Checksum, prev.Objects, prev.GVKs); err != nil {
		logrus.Warnf("deploy %s: %v", f.Rel, err)
	}
}

func (c *Controller) fail(ctx context.Context, addon *unstructured.Unstructured, prev addonStatus, reason, message string) {
	if ctx.Err() != nil {
		return
	}
	if prev.State != stateFailed || prev.Message != message {
		logrus.Errorf("deploy: %s", message)
	}
	if _, err := c.addons.setStatus(ctx, addon, stateFailed, message, "", 0, prev.GVKs); err != nil {
		logrus.Warnf("deploy: %v", err)
	}
	c.event(addon, corev1.EventTypeWarning, reason, message)
}

// remove deletes the objects of a file that is gone, then its Addon.
func (c *Controller) remove(ctx context.Context, addon *unstructured.Unstructured) {
	addon = withGVK(addon)
	st := readStatus(addon)
	source, _, _ := unstructured.NestedString(addon.Object, "spec", "source")
	if err := c.apply.WithContext(ctx).WithOwner(addon).WithGVK(st.GVKs...).ApplyObjects(); err != nil {
		logrus.Warnf("delete the objects of removed manifest %s: %v; retrying at the next resync", source, err)
		return
	}
	if err := c.addons.delete(ctx, addon.GetName()); err != nil {
		logrus.Warnf("deploy: %v", err)
		return
	}
	logrus.Infof("manifest %s was removed: deleted its objects", source)
	c.mu.Lock()
	delete(c.lastEvent, addon.GetName())
	c.mu.Unlock()
}

// event records an event on the addon unless it repeats the last one.
func (c *Controller) event(addon *unstructured.Unstructured, eventType, reason, message string) {
	key := eventType + "/" + reason + "/" + message
	c.mu.Lock()
	repeated := c.lastEvent[addon.GetName()] == key
	c.lastEvent[addon.GetName()] = key
	c.mu.Unlock()
	if !repeated {
		c.recorder.Event(addon, eventType, reason, message)
	}
}

func objectGVKs(objs []runtime.Object) []schema.GroupVersionKind {
	var out []schema.GroupVersionKind
	for _, o := range objs {
		gvk := o.GetObjectKind().GroupVersionKind()
		if !slices.Contains(out, gvk) {
			out = append(out, gvk)
		}
	}
	return out
}

func unionGVKs(a, b []schema.GroupVersionKind) []schema.GroupVersionKind {
	out := slices.Clone(a)
	for _, g := range b {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}
