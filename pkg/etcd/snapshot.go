package etcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/skiff-io/skiff/pkg/fileutil"
	"github.com/skiff-io/skiff/pkg/pki"
)

// Snapshot names: k3s's, so that users find the files they expect.
const (
	// ScheduledSnapshotName names the snapshots the server takes on its
	// schedule; its retention applies to them only.
	ScheduledSnapshotName = "etcd-snapshot"
	// OnDemandSnapshotName names the snapshots users take by hand.
	OnDemandSnapshotName = "on-demand"
)

// Snapshot is one snapshot file of the embedded etcd.
type Snapshot struct {
	// Name is the file name, <name>-<node name>-<unix time>.
	Name    string    `json:"name"`
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// snapshotFile is what List takes for a snapshot: etcd's, not the SQLite
// datastore's snapshot-<time>.db beside them.
var snapshotFile = regexp.MustCompile(`^[^.].*-.+-([0-9]+)$`)

// SnapshotFileName is the file name of a snapshot named name that node
// takes at t.
func SnapshotFileName(name, node string, t time.Time) string {
	return fmt.Sprintf("%s-%s-%d", name, node, t.Unix())
}

// ValidateSnapshotName checks a snapshot's --name, which becomes the start
// of a file name.
func ValidateSnapshotName(name string) error {
	switch {
	case name == "":
		return errors.New("the snapshot name is empty; pass a --name such as " + OnDemandSnapshotName)
	case strings.HasPrefix(name, "."), strings.ContainsAny(name, "/\x00"), strings.IndexFunc(name, func(r rune) bool { return r <= ' ' }) >= 0:
		return fmt.Errorf("invalid snapshot name %q: it starts a file name, so it may not start with a dot or hold a slash or spaces; use a name such as %s", name, OnDemandSnapshotName)
	}
	return nil
}

// LocalClient reaches the etcd member of the server whose TLS dir is
// tlsDir, on this host, with the client certificate its apiserver uses.
func LocalClient(tlsDir string) Client {
	files := pki.EtcdFiles(tlsDir)
	u := clientURL(loopback, DefaultClientPort)
	return Client{Endpoints: []string{u.String()}, CAFile: files.ServerCACert, CertFile: files.ClientCert, KeyFile: files.ClientKey}
}

// ErrNotRunning is returned when no member answers at the client's
// endpoint.
var ErrNotRunning = errors.New("no etcd member answers")

// MemberName asks the member at c's one endpoint for its name, the name of
// the node it runs on.
func MemberName(ctx context.Context, c Client) (string, error) {
	if err := c.reachable(); err != nil {
		return "", err
	}
	cli, err := c.Connect()
	if err != nil {
		return "", err
	}
	defer cli.Close()
	status, err := cli.Status(ctx, c.Endpoints[0])
	if err != nil {
		return "", fmt.Errorf("ask the etcd member at %s its status: %w", c.Endpoints[0], err)
	}
	list, err := cli.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("list etcd members at %s: %w", c.Endpoints[0], err)
	}
	for _, m := range list.Members {
		if m.ID == status.Header.MemberId && m.Name != "" {
			return m.Name, nil
		}
	}
	return "", fmt.Errorf("the etcd member at %s is not in its own member list", c.Endpoints[0])
}

// reachable tells a member that does not run apart from other failures:
// the client would retry until its context ends.
func (c Client) reachable() error {
	if len(c.Endpoints) != 1 {
		return fmt.Errorf("a snapshot is taken from one etcd member, not from %d endpoints", len(c.Endpoints))
	}
	if reach(c.Endpoints) != nil {
		return fmt.Errorf("%w at %s", ErrNotRunning, c.Endpoints[0])
	}
	return nil
}

// SaveSnapshot streams a snapshot of the member at c's one endpoint into
// dir as SnapshotFileName(name, node, now), readable by its owner only.
// The data arrives in a hidden temporary file that takes its name only
// once complete and synced: a crash never leaves a partial snapshot under
// a snapshot's name.
func SaveSnapshot(ctx context.Context, c Client, dir, name, node string, now time.Time) (Snapshot, error) {
	if err := ValidateSnapshotName(name); err != nil {
		return Snapshot{}, err
	}
	if err := c.reachable(); err != nil {
		return Snapshot{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Snapshot{}, fmt.Errorf("create the snapshot dir %s: %w", dir, err)
	}
	base := SnapshotFileName(name, node, now)
	final := filepath.Join(dir, base)
	if _, err := os.Lstat(final); err == nil {
		return Snapshot{}, fmt.Errorf("snapshot %s already exists; wait a second or pass another --name", final)
	}
	tmp := filepath.Join(dir, "."+base+".partial")
	// etcd's client streams into tmp+".part" and renames it to tmp.
	for _, stale := range []string{tmp, tmp + ".part"} {
		if err := os.Remove(stale); err != nil && !errors.Is(err, os.ErrNotExist) {
			return Snapshot{}, fmt.Errorf("remove the leftover %s: %w", stale, err)
		}
	}
	defer os.Remove(tmp)

	cfg, err := c.config()
	if err != nil {
		return Snapshot{}, err
	}
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), cfg, tmp); err != nil {
		return Snapshot{}, saveError(dir, c.Endpoints[0], err)
	}
	// A link, unlike a rename, never replaces a snapshot taken meanwhile.
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, os.ErrExist) {
			return Snapshot{}, fmt.Errorf("snapshot %s already exists; wait a second or pass another --name", final)
		}
		return Snapshot{}, saveError(dir, c.Endpoints[0], fmt.Errorf("move the snapshot into place: %w", err))
	}
	if err := os.Remove(tmp); err != nil {
		return Snapshot{}, fmt.Errorf("remove %s: %w", tmp, err)
	}
	if err := fileutil.Sync(dir); err != nil {
		return Snapshot{}, err
	}
	st, err := os.Stat(final)
	if err != nil {
		return Snapshot{}, fmt.Errorf("stat the new snapshot: %w", err)
	}
	return Snapshot{Name: base, Path: final, Size: st.Size(), Created: time.Unix(now.Unix(), 0)}, nil
}

func saveError(dir, endpoint string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("no space left in %s for the snapshot: free some space there or save snapshots elsewhere with --etcd-snapshot-dir", dir)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("cannot write a snapshot into %s (%v): run as the user the server runs as, or choose another --etcd-snapshot-dir", dir, err)
	}
	return fmt.Errorf("save a snapshot of the etcd member at %s into %s: %w", endpoint, dir, err)
}

func (c Client) config() (clientv3.Config, error) {
	tlsConfig, err := (&transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}).ClientConfig()
	if err != nil {
		return clientv3.Config{}, fmt.Errorf("etcd client TLS: %w", err)
	}
	return clientv3.Config{Endpoints: c.Endpoints, TLS: tlsConfig, DialTimeout: 10 * time.Second}, nil
}

// ListSnapshots lists the snapshots in dir, oldest first; a dir that does
// not exist holds none.
func ListSnapshots(dir string) ([]Snapshot, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", dir, err)
	}
	var out []Snapshot
	for _, e := range entries {
		m := snapshotFile.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list snapshots in %s: %w", dir, err)
		}
		created := info.ModTime()
		if unix, err := strconv.ParseInt(m[1], 10, 64); err == nil {
			created = time.Unix(unix, 0)
		}
		out = append(out, Snapshot{Name: e.Name(), Path: filepath.Join(dir, e.Name()), Size: info.Size(), Created: created})
	}
	sortSnapshots(out)
	return out, nil
}

func sortSnapshots(s []Snapshot) {
	slices.SortStableFunc(s, func(a, b Snapshot) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// Expired are the snapshots named name that node took, except the newest
// keep; keep < 1 keeps them all. Others' snapshots are never counted: each
// server keeps its own, and a dir may be shared.
func Expired(snapshots []Snapshot, name, node string, keep int) []Snapshot {
	if keep < 1 {
		return nil
	}
	prefix := name + "-" + node + "-"
	var mine []Snapshot
	for _, s := range snapshots {
		rest, ok := strings.CutPrefix(s.Name, prefix)
		if ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			mine = append(mine, s)
		}
	}
	sortSnapshots(mine)
	if len(mine) <= keep {
		return nil
	}
	return mine[:len(mine)-keep]
}

// PruneSnapshots removes from dir the snapshots Expired names and returns
// them, oldest first.
func PruneSnapshots(dir, name, node string, keep int) ([]Snapshot, error) {
	all, err := ListSnapshots(dir)
	if err != nil {
		return nil, err
	}
	var removed []Snapshot
	for _, s := range Expired(all, name, node, keep) {
		if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("remove the expired snapshot %s: %w", s.Path, err)
		}
		removed = append(removed, s)
	}
	return removed, nil
}

// DeleteSnapshots removes the snapshots named (file names, as ListSnapshots
// gives them) from dir. It deletes those it can and reports the others.
func DeleteSnapshots(dir string, names ...string) error {
	var errs []error
	for _, n := range names {
		if n != filepath.Base(n) || !snapshotFile.MatchString(n) {
			errs = append(errs, fmt.Errorf("%q is not the name of a snapshot: give a name as \"skiff etcd-snapshot ls\" lists it", n))
			continue
		}
		err := os.Remove(filepath.Join(dir, n))
		switch {
		case errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("no snapshot %s in %s; \"skiff etcd-snapshot ls\" lists them", n, dir))
		case err != nil:
			errs = append(errs, fmt.Errorf("delete snapshot %s: %w", n, err))
		}
	}
	if len(errs) == 0 {
		return fileutil.Sync(dir)
	}
	return errors.Join(errs...)
}
