package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/bundle"
	"github.com/skiff-io/skiff/pkg/images"
)

// PauseImage is the sandbox image every pod starts with. It is built from
// the pause program shipped inside skiff, so no node ever pulls it.
const PauseImage = "skiff.local/system/pause:3.10"

// CoreDNSImage carries the CoreDNS build shipped inside skiff; the tag is
// the upstream release it is compiled from.
const CoreDNSImage = "skiff.local/system/coredns:1.15.0"

// MetricsServerImage carries the upstream metrics-server build shipped
// inside skiff; the tag is the release it is compiled from.
const MetricsServerImage = "skiff.local/system/metrics-server:v0.8.0"

// SystemImageNames are the references of one build's system images.
type SystemImageNames struct {
	Pause, CoreDNS, Ingress, LocalPath, MetricsServer string
	// HelmJob runs the HelmChart controller's install and delete jobs.
	HelmJob string
}

// systemRegistry is the registry part of the system images' names.
const systemRegistry = "skiff.local"

// SystemImages names this build's system images, under registry (a
// --system-default-registry) instead of skiff.local when it is not "".
// Those that hold skiff's own code (the ingress controller,
// the volume helper beside the local-path provisioner, the HelmChart jobs'
// helm client) change with skiff
// itself: their tag is the content hash of the helpers every node of one
// build shares.
func SystemImages(registry string) (SystemImageNames, error) {
	hash, err := bundle.ContentHash()
	if err != nil {
		return SystemImageNames{}, err
	}
	own := func(name string) string { return systemRegistry + "/system/" + name + ":" + hash }
	r := func(name string) string { return WithRegistry(name, registry) }
	return SystemImageNames{
		Pause:         r(PauseImage),
		CoreDNS:       r(CoreDNSImage),
		Ingress:       r(own("ingress")),
		LocalPath:     r(own("local-path")),
		MetricsServer: r(MetricsServerImage),
		HelmJob:       r(own("helm")),
	}, nil
}

// WithRegistry renames a system image to registry, as k3s's
// --system-default-registry does: the registry replaces skiff.local and
// the path stays, so skiff.local/system/coredns:1.15.0 becomes
// REGISTRY/system/coredns:1.15.0, which is where a user mirrors it.
func WithRegistry(name, registry string) string {
	if registry == "" {
		return name
	}
	return registry + strings.TrimPrefix(name, systemRegistry)
}

// systemImages imports the images a node needs from the skiff binary itself
// and the user's airgap tarballs, then keeps watching the images folder.
// Start returns once the sandbox image and the airgap tarballs are in: the
// kubelet needs no other image to start, and the addons' images, imported
// meanwhile in the order their pods are usually deployed, are in by the
// time the node is Ready and its first pods are scheduled. A failed import
// of one ends the component.
type systemImages struct {
	address string
	binDir  string
	dir     *containerd.ImageDir
	// registry is the cluster's --system-default-registry: each image is
	// also named under it, which is how the addons' manifests name them,
	// so they resolve without a pull.
	registry string
}

func (s *systemImages) Name() string { return "images" }

func (s *systemImages) Start(ctx context.Context) (<-chan error, error) {
	specs, err := s.specs()
	if err != nil {
		return nil, err
	}
	sandbox, addons := specs[0], specs[1:]
	if err := s.importImage(ctx, sandbox); err != nil {
		return nil, err
	}
	imported := make(chan error, 1)
	go func() {
		for _, spec := range addons {
			if err := s.importImage(ctx, spec); err != nil {
				imported <- err
				return
			}
		}
		imported <- nil
	}()
	if err := s.dir.ImportAll(ctx); err != nil {
		logrus.Warnf("import images from %s: %v", s.dir.Dir, err)
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		if err := <-imported; err != nil {
			if ctx.Err() == nil {
				done <- err
			}
			return
		}
		if err := s.dir.Watch(ctx); err != nil && ctx.Err() == nil {
			// Losing the watch must not take the node down; files present at
			// the next start are still imported.
			logrus.Warnf("watch %s for new images: %v", s.dir.Dir, err)
		}
		<-ctx.Done()
	}()
	return done, nil
}

// specs describes the system images, the pod sandbox's first: each holds
// static programs from the helper executables.
func (s *systemImages) specs() ([]images.Spec, error) {
	// Built under skiff.local, the names that never change; importImage
	// adds the registry's.
	names, err := SystemImages("")
	if err != nil {
		return nil, err
	}
	program := func(file string) images.File {
		return images.File{Source: filepath.Join(s.binDir, file), Path: "/" + file, Mode: 0o755}
	}
	return []images.Spec{
		{
			Name:       names.Pause,
			Entrypoint: []string{"/pause"},
			Files:      []images.File{program("pause")},
			User:       "65535:65535",
		},
		{
			Name:         names.CoreDNS,
			Entrypoint:   []string{"/coredns"},
			Files:        []images.File{program("coredns")},
			ExposedPorts: []string{"53/udp", "53/tcp", "9153/tcp"},
		},
		{
			Name:         names.Ingress,
			Entrypoint:   []string{"/skiff-ingress"},
			Files:        []images.File{program("skiff-ingress")},
			ExposedPorts: []string{"80/tcp", "443/tcp"},
		},
		{
			Name:       names.LocalPath,
			Entrypoint: []string{"/local-path-provisioner"},
			Files:      []images.File{program("local-path-provisioner"), program("skiff-volume-helper")},
		},
		{
			Name:         names.MetricsServer,
			Entrypoint:   []string{"/metrics-server"},
			Files:        []images.File{program("metrics-server")},
			ExposedPorts: []string{"4443/tcp"},
		},
		{
			Name:       names.HelmJob,
			Entrypoint: []string{"/skiff-helm"},
			Files:      []images.File{program("skiff-helm")},
			// helm-controller's jobs demand runAsNonRoot without naming a
			// user: the image names one.
			User: "65534:65534",
		},
	}, nil
}

// importImage imports one system image, pinned so image garbage collection
// never removes it, unless containerd already has exactly this image.
func (s *systemImages) importImage(ctx context.Context, spec images.Spec) error {
	for _, f := range spec.Files {
		if _, err := os.Stat(f.Source); err != nil {
			return fmt.Errorf("%s missing from the helper executables (%w); rebuild skiff with scripts/build", filepath.Base(f.Source), err)
		}
	}
	digest, err := images.Digest(spec)
	if err != nil {
		return fmt.Errorf("build the image %s: %w", spec.Name, err)
	}
	if have, err := containerd.HasImage(ctx, s.address, spec.Name, digest); err != nil {
		logrus.Warnf("check image %s: %v; importing it again", spec.Name, err)
	} else if have {
		return s.alias(ctx, spec.Name)
	}
	began := time.Now()
	// Streamed: a system image is tens of MiB that skiff's heap (and so
	// its resident memory) need never hold.
	pr, pw := io.Pipe()
	go func() {
		_, err := images.Write(pw, spec)
		pw.CloseWithError(err)
	}()
	_, err = containerd.ImportArchive(ctx, s.address, pr, containerd.WithPinned())
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("import the image %s: %w", spec.Name, err)
	}
	logrus.Infof("imported system image %s in %s", spec.Name, time.Since(began).Round(10*time.Millisecond))
	return s.alias(ctx, spec.Name)
}

// alias names the system image name also under the cluster's
// --system-default-registry, if it has one.
func (s *systemImages) alias(ctx context.Context, name string) error {
	alias := WithRegistry(name, s.registry)
	if alias == name {
		return nil
	}
	return containerd.TagImage(ctx, s.address, name, alias)
}
