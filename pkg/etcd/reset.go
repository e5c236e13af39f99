package etcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// revisionBump moves the restored data's revision far past any a client
// saw before the restore, and the revisions in between are marked
// compacted: watchers that resume from a revision of the lost future are
// told to list again instead of silently missing changes (etcd's advice
// for restoring a Kubernetes datastore).
const revisionBump = 1_000_000_000

// ResetMarker is the file that records a reset until the member starts
// normally, so that a server left with the reset flags does not reset
// (or restore) again on every start.
func ResetMarker(dataDir string) string { return filepath.Clean(dataDir) + "-reset" }

// ClearResetMarker forgets a reset once the member has started normally.
func ClearResetMarker(dataDir string) error {
	if err := os.Remove(ResetMarker(dataDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the reset marker: %w", err)
	}
	return nil
}

// Reset makes this member the only member of a new cluster that keeps its
// data (etcd's force-new-cluster), for a cluster that lost its quorum. With
// restorePath, it first restores that snapshot, with etcd's own restore,
// into a new data dir; the former one is moved aside beside it as
// <data dir>-old-<unix time>, never deleted, and returned. The member
// runs until it is ready as a cluster of one, then stops: the server
// restarts without the reset flags.
func (e *Etcd) Reset(ctx context.Context, restorePath string, now time.Time) (movedAside string, err error) {
	cfg, level, err := e.config()
	if err != nil {
		return "", err
	}
	marker := ResetMarker(e.DataDir)
	if _, err := os.Stat(marker); err == nil {
		return "", fmt.Errorf("etcd member %s was already reset and has not run since: start skiff without --cluster-reset and --cluster-reset-restore-path; to reset it once more, delete %s first", e.MemberName, marker)
	}
	if restorePath != "" {
		if movedAside, err = e.restore(cfg, restorePath, now); err != nil {
			return "", err
		}
	} else if !HasData(e.DataDir) {
		return "", fmt.Errorf("no etcd data in %s to reset: --cluster-reset keeps a member's data, so it needs a server that ran embedded etcd; pass --cluster-reset-restore-path to start from a snapshot instead", e.DataDir)
	}
	if err := e.runAlone(ctx, cfg, level); err != nil {
		return movedAside, err
	}
	if err := os.WriteFile(marker, []byte(now.UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return movedAside, fmt.Errorf("record the reset in %s: %w", marker, err)
	}
	return movedAside, nil
}

// restore fills a new data dir from the snapshot and puts it in the
// member's place. The snapshot is restored, and its checksum verified,
// before anything is moved: a bad snapshot leaves the member as it was.
func (e *Etcd) restore(cfg *embed.Config, snapshotPath string, now time.Time) (string, error) {
	st, err := os.Stat(snapshotPath)
	if err != nil {
		return "", fmt.Errorf("cannot read the snapshot %s (%v): give the path of a snapshot file; \"skiff etcd-snapshot ls\" lists them", snapshotPath, unwrapPathError(err))
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a snapshot file; \"skiff etcd-snapshot ls\" lists them", snapshotPath)
	}
	parent := filepath.Dir(filepath.Clean(e.DataDir))
	base := filepath.Base(filepath.Clean(e.DataDir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", parent, err)
	}
	tmp := filepath.Join(parent, "."+base+"-restore")
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("remove the leftover %s of an earlier restore: %w", tmp, err)
	}
	logger := zap.NewNop()
	if e.Debug {
		if logger, err = logutil.CreateDefaultZapLogger(zapcore.InfoLevel); err != nil {
			return "", fmt.Errorf("etcd logger: %w", err)
		}
	}
	err = etcdutl.NewV3(logger).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        snapshotPath,
		Name:                e.MemberName,
		OutputDataDir:       tmp,
		PeerURLs:            []string{cfg.AdvertisePeerUrls[0].String()},
		InitialCluster:      cfg.InitialCluster,
		InitialClusterToken: cfg.InitialClusterToken,
		RevisionBump:        revisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		os.RemoveAll(tmp)
		if errors.Is(err, syscall.ENOSPC) {
			return "", fmt.Errorf("no space left in %s to restore %s: free some space there and try again", parent, snapshotPath)
		}
		return "", fmt.Errorf("cannot restore %s (%v): is it a whole etcd snapshot, as \"skiff etcd-snapshot save\" writes? Pick another one", snapshotPath, err)
	}

	aside := ""
	entries, err := os.ReadDir(e.DataDir)
	switch {
	case len(entries) > 0:
		aside = filepath.Join(parent, fmt.Sprintf("%s-old-%d", base, now.Unix()))
		if _, err := os.Lstat(aside); err == nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("%s already exists; wait a second and try again", aside)
		}
		if err := os.Rename(e.DataDir, aside); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("move the former etcd data aside: %w", err)
		}
	case err == nil || errors.Is(err, os.ErrNotExist):
		if err := os.RemoveAll(e.DataDir); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("remove the empty %s: %w", e.DataDir, err)
		}
	default:
		os.RemoveAll(tmp)
		return "", fmt.Errorf("read %s: %w", e.DataDir, err)
	}
	if err := os.Rename(tmp, e.DataDir); err != nil {
		return aside, fmt.Errorf("move the restored data into %s: %w", e.DataDir, err)
	}
	return aside, fileutil.Sync(parent)
}

// runAlone starts the member as a cluster of itself, waits until it is
// ready and stops it.
func (e *Etcd) runAlone(ctx context.Context, cfg *embed.Config, level zap.AtomicLevel) error {
	if err := e.prepareDataDir(); err != nil {
		return err
	}
	if err := portsFree(cfg); err != nil {
		return err
	}
	cfg.ForceNewCluster = true
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd member %s as a new cluster: %w", e.MemberName, err)
	}
	stop := func() {
		if !e.Debug {
			level.SetLevel(zapcore.FatalLevel)
		}
		srv.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	select {
	case <-srv.Server.ReadyNotify():
	case <-srv.Server.StopNotify():
		stop()
		return fmt.Errorf("etcd member %s stopped while starting as a new cluster; its log above says why", e.MemberName)
	case err := <-srv.Err():
		srv.Server.HardStop()
		stop()
		return fmt.Errorf("etcd member %s failed while starting as a new cluster: %w", e.MemberName, err)
	case <-ctx.Done():
		srv.Server.HardStop()
		stop()
		return fmt.Errorf("etcd member %s did not become ready as a new cluster within %s (%w); its log above says why", e.MemberName, readyTimeout, ctx.Err())
	}
	members := srv.Server.Cluster().Members()
	stop()
	if len(members) != 1 {
		return fmt.Errorf("etcd member %s still counts %d members after the reset", e.MemberName, len(members))
	}
	return nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
