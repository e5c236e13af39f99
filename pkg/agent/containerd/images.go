package containerd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	distref "github.com/distribution/reference"
	"github.com/fsnotify/fsnotify"
	"github.com/klauspost/compress/zstd"
	"github.com/sirupsen/logrus"
)

const (
	// PinnedLabel marks an image the CRI plugin reports as pinned, which
	// the kubelet's image garbage collection never removes.
	PinnedLabel = "io.cri-containerd.pinned"
	// PinnedValue is PinnedLabel's value for a pinned image.
	PinnedValue = "pinned"
)

// ImportOption changes how an archive is imported.
type ImportOption func(*importOptions)

type importOptions struct {
	pinned      bool
	snapshotter string
}

// WithPinned pins the imported images so the kubelet never garbage
// collects them; for system images and anything that cannot be pulled again.
func WithPinned() ImportOption { return func(o *importOptions) { o.pinned = true } }

// WithSnapshotter unpacks into the named snapshotter instead of the one
// containerd was started with (recorded on the k8s.io namespace by Process).
func WithSnapshotter(name string) ImportOption {
	return func(o *importOptions) { o.snapshotter = name }
}

// ImportArchive imports a docker-archive ("docker save") or OCI image layout
// tar from r into containerd's k8s.io namespace, unpacks it for this node's
// platform so containers start without a pull, and returns the image names.
// Images are named after their io.containerd.image.name annotation, a full
// org.opencontainers.image.ref.name, or their docker RepoTags. The CRI
// plugin notices the new images by itself and lists them.
func ImportArchive(ctx context.Context, address string, r io.Reader, opts ...ImportOption) ([]string, error) {
	var o importOptions
	for _, opt := range opts {
		opt(&o)
	}
	cl, err := containerd.New(address, containerd.WithDefaultNamespace(Namespace))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd: %w", err)
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	// One lease over import and unpack so garbage collection cannot remove
	// content between the two.
	ctx, done, err := cl.WithLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("import images: %w", err)
	}
	defer done(context.WithoutCancel(ctx))

	iopts := []containerd.ImportOpt{
		// Only this node's platform: other platforms' layers are dead
		// weight, and multi-platform archives often omit them anyway.
		containerd.WithAllPlatforms(false),
		containerd.WithImportPlatform(platforms.Default()),
		containerd.WithSkipMissing(),
		containerd.WithImageRefTranslator(fullReference),
	}
	if o.pinned {
		iopts = append(iopts, containerd.WithImageLabels(map[string]string{PinnedLabel: PinnedValue}))
	}
	imgs, err := cl.Import(ctx, r, iopts...)
	if err != nil {
		return nil, fmt.Errorf("import images: %w", err)
	}
	if len(imgs) == 0 {
		return nil, errors.New("the archive names no image; save it with a name and tag (docker save name:tag) or set the io.containerd.image.name annotation")
	}
	names := make([]string, 0, len(imgs))
	for _, img := range imgs {
		image := containerd.NewImageWithPlatform(cl, img, platforms.DefaultStrict())
		if err := image.Unpack(ctx, o.snapshotter); err != nil {
			return names, fmt.Errorf("unpack image %s: %w", img.Name, err)
		}
		names = append(names, img.Name)
	}
	return names, nil
}

// fullReference turns an OCI ref.name annotation into an image name when it
// is a complete reference; a bare tag like "latest" names nothing.
func fullReference(ref string) string {
	if !strings.ContainsAny(ref, "/:@") {
		return ""
	}
	named, err := distref.ParseDockerRef(ref)
	if err != nil {
		return ""
	}
	return named.String()
}

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// archiveExts are the file names ImportFile understands.
var archiveExts = []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst"}

// IsArchive reports whether name is an image archive ImportFile reads.
func IsArchive(name string) bool {
	if strings.HasPrefix(filepath.Base(name), ".") { // temporary files of atomic writers
		return false
	}
	for _, ext := range archiveExts {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// ImportFile imports an image archive file: .tar, .tar.gz/.tgz (gzip) or
// .tar.zst/.tzst (zstd). See ImportArchive.
func ImportFile(ctx context.Context, address, path string, opts ...ImportOption) ([]string, error) {
	if !IsArchive(path) {
		return nil, fmt.Errorf("%s: not an image archive; name it *.tar, *.tar.gz, *.tgz, *.tar.zst or *.tzst", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".gz"), strings.HasSuffix(path, ".tgz"):
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: not gzip-compressed: %w", path, err)
		}
		defer gz.Close()
		r = gz
	case strings.HasSuffix(path, ".zst"), strings.HasSuffix(path, ".tzst"):
		// The zstd reader only fails on its first read; check the magic
		// now so a misnamed file fails before containerd is involved.
		br := bufio.NewReader(f)
		if magic, err := br.Peek(4); err != nil || !bytes.Equal(magic, zstdMagic) {
			return nil, fmt.Errorf("%s: not zstd-compressed", path)
		}
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: not zstd-compressed: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	return ImportArchive(ctx, address, r, opts...)
}

// ImageDir imports the image archives dropped into a directory (typically
// <data-dir>/agent/images). Its images are pinned: an air-gapped node could
// not pull them again after the kubelet garbage-collected them.
type ImageDir struct {
	Dir     string
	Address string

	mu   sync.Mutex
	seen map[string]fileKey // path -> version last imported (or failed)
	// watching, when set, is called once Watch sees every new file: the
	// tests' signal to drop one.
	watching func()
}

// fileKey identifies a version of a file cheaply.
type fileKey struct {
	size  int64
	mtime time.Time
}

// ImportAll imports every archive in Dir not yet imported by this process in
// its current version. A broken archive is logged and skipped; only an
// unreadable Dir is an error. A missing Dir is created.
func (d *ImageDir) ImportAll(ctx context.Context) error {
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return fmt.Errorf("image dir: %w", err)
	}
	entries, err := os.ReadDir(d.Dir)
	if err != nil {
		return fmt.Errorf("image dir: %w", err)
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return nil
		}
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			d.importFile(ctx, filepath.Join(d.Dir, e.Name()))
		}
	}
	return nil
}

// importFile imports path unless this version of it was handled already.
func (d *ImageDir) importFile(ctx context.Context, path string) {
	if !IsArchive(path) {
		return
	}
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return // gone again, or a dangling link: nothing to import
	}
	key := fileKey{st.Size(), st.ModTime()}
	d.mu.Lock()
	if d.seen == nil {
		d.seen = map[string]fileKey{}
	}
	if d.seen[path] == key {
		d.mu.Unlock()
		return
	}
	// Recorded before the import, failed ones included: a broken file is
	// retried once it changes, not on every scan.
	d.seen[path] = key
	d.mu.Unlock()

	names, err := ImportFile(ctx, d.Address, path, WithPinned())
	if err != nil {
		if ctx.Err() != nil {
			d.forget(path) // interrupted, not broken
			return
		}
		logrus.Errorf("import %s: %v", path, err)
		return
	}
	logrus.Infof("imported %s from %s", strings.Join(names, ", "), path)
}

func (d *ImageDir) forget(path string) {
	d.mu.Lock()
	delete(d.seen, path)
	d.mu.Unlock()
}

// settle is how long a file must stay unchanged before it is imported, so
// a copy in progress is not read half-written.
var settle = time.Second

// Watch imports what is in Dir now and then every archive that appears or
// changes, once its writes settle, until ctx is cancelled. A missing Dir is
// created.
func (d *ImageDir) Watch(ctx context.Context) error {
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return fmt.Errorf("image dir: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch image dir: %w", err)
	}
	defer w.Close()
	if err := w.Add(d.Dir); err != nil {
		return fmt.Errorf("watch image dir %s: %w", d.Dir, err)
	}
	// Scanning after the watch is set up misses nothing in between.
	if err := d.ImportAll(ctx); err != nil {
		return err
	}
	if d.watching != nil {
		d.watching()
	}

	ready := make(chan string)
	timers := map[string]*time.Timer{}
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !IsArchive(ev.Name) || !ev.Has(fsnotify.Create|fsnotify.Write|fsnotify.Rename|fsnotify.Chmod) {
				continue
			}
			path := ev.Name
			if t, ok := timers[path]; ok {
				t.Reset(settle)
				continue
			}
			timers[path] = time.AfterFunc(settle, func() {
				select {
				case ready <- path:
				case <-ctx.Done():
				}
			})
		case path := <-ready:
			delete(timers, path)
			// Imports run one at a time, in this loop: they compete for
			// the same disk anyway, and events queue meanwhile.
			d.importFile(ctx, path)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			logrus.Warnf("watch image dir %s: %v", d.Dir, err)
		}
	}
}

// HasImage reports whether containerd already holds the image name at
// the manifest digest, unpacked for this node, so importing it again
// would change nothing.
func HasImage(ctx context.Context, address, name, digest string) (bool, error) {
	cl, err := containerd.New(address, containerd.WithDefaultNamespace(Namespace))
	if err != nil {
		return false, fmt.Errorf("connect to containerd: %w", err)
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	img, err := cl.ImageService().Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up image %s: %w", name, err)
	}
	if img.Target.Digest.String() != digest {
		return false, nil
	}
	image := containerd.NewImageWithPlatform(cl, img, platforms.DefaultStrict())
	// "" is the snapshotter recorded on the namespace, as for imports.
	return image.IsUnpacked(ctx, "")
}

// TagImage names the image held as name also as alias (same manifest, same
// labels, so a pinned image stays pinned under both), replacing what alias
// named before. The CRI plugin notices the new name by itself.
func TagImage(ctx context.Context, address, name, alias string) error {
	cl, err := containerd.New(address, containerd.WithDefaultNamespace(Namespace))
	if err != nil {
		return fmt.Errorf("connect to containerd: %w", err)
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	is := cl.ImageService()
	img, err := is.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("look up image %s: %w", name, err)
	}
	img.Name = alias
	if _, err := is.Create(ctx, img); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("name image %s as %s: %w", name, alias, err)
		}
		if _, err := is.Update(ctx, img); err != nil {
			return fmt.Errorf("name image %s as %s: %w", name, alias, err)
		}
	}
	return nil
}
