package datastore

import (
	"context"
	"errors"
	"fmt"

	"github.com/k3s-io/kine/pkg/server"
	"golang.org/x/sys/unix"
)

// When SQLite refuses an insert (the disk is full, say), kine v0.17.5's
// Create, Update and Delete look the key up to tell a conflict from a lost
// race, and drop the insert's error on the way: a Create is then answered
// with success although nothing was stored, and an Update or Delete as a
// conflict on the revision it was given, which the apiserver retries until
// its request times out. refusedWrites wraps kine's SQLite backend (see
// sqlite.go) to turn those answers back into errors.

// refusedWrites is a kine backend whose writes fail when SQLite did not
// store them. dir holds the database.
type refusedWrites struct {
	server.Backend
	dir string
}

func (b *refusedWrites) Create(ctx context.Context, key string, value []byte, lease int64) (int64, error) {
	rev, err := b.Backend.Create(ctx, key, value, lease)
	if err != nil {
		return rev, err
	}
	// A stored create is the key's row at the revision it returns; a
	// refused one returns the current revision, which is another row's.
	_, kv, err := b.Backend.Get(ctx, key, rev, true)
	if errors.Is(err, server.ErrCompacted) {
		return rev, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read back the create of %s: %w", key, err)
	}
	if kv == nil || kv.ModRevision != rev {
		return 0, b.refused(key)
	}
	return rev, nil
}

func (b *refusedWrites) Update(ctx context.Context, key string, value []byte, revision, lease int64) (int64, *server.KeyValue, bool, error) {
	rev, kv, updated, err := b.Backend.Update(ctx, key, value, revision, lease)
	// A conflict means the key moved on from revision; still at revision,
	// the write was refused.
	if err == nil && !updated && kv != nil && kv.ModRevision == revision {
		return 0, nil, false, b.refused(key)
	}
	return rev, kv, updated, err
}

func (b *refusedWrites) Delete(ctx context.Context, key string, revision int64) (int64, *server.KeyValue, bool, error) {
	rev, kv, deleted, err := b.Backend.Delete(ctx, key, revision)
	if err == nil && !deleted && kv != nil && revision != 0 && kv.ModRevision == revision {
		return 0, nil, false, b.refused(key)
	}
	return rev, kv, deleted, err
}

// fullBelow is the free space under which a refused write is put down to a
// full disk: SQLite needs room for a transaction's pages in its WAL.
const fullBelow = 4 << 20

// refused says why SQLite did not store a write to key, as far as skiff
// can tell: kine has dropped SQLite's own error.
func (b *refusedWrites) refused(key string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(b.dir, &fs); err == nil {
		if free := fs.Bavail * uint64(fs.Bsize); free < fullBelow {
			return fmt.Errorf("the datastore's disk is full (%d KiB free for %s): free space on it, and writes succeed again by themselves", free>>10, b.dir)
		}
	}
	return fmt.Errorf("the datastore did not store the write to %s: SQLite refused it; check the disk holding %s and the server log", key, b.dir)
}
