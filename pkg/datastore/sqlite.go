package datastore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/k3s-io/kine/pkg/drivers"
	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/server"
	"github.com/sirupsen/logrus"
)

// skiff replaces kine's "sqlite" driver with the same driver plus two
// things kine lacks: writes SQLite refused come back as errors
// (refusedWrites), and the WAL is emptied after kine's startup VACUUM.
// Both go through kine's own connection pool: a second SQLite connection
// opened by skiff could come from the other SQLite library (kine links
// mattn's with cgo, modernc's without), and two SQLite libraries in one
// process release each other's POSIX locks on the database.
func init() {
	drivers.Register("sqlite", func(ctx context.Context, wg *sync.WaitGroup, cfg *drivers.Config) (bool, server.Backend, error) {
		backend, db, err := sqlite.NewVariant(ctx, wg, "sqlite3", cfg)
		if err != nil {
			return false, nil, err
		}
		if err := checkpointWAL(ctx, db.DB); err != nil {
			// kine's own checkpoints get there later; only the space waits.
			logrus.Warnf("datastore: %v", err)
		}
		path, _, _ := strings.Cut(cfg.DataSourceName, "?")
		return false, &refusedWrites{Backend: backend, dir: filepath.Dir(path)}, nil
	})
}

// checkpointWAL copies the WAL into the database file and empties it. kine
// VACUUMs at start, after its own checkpoint: the rewritten database then
// sits in the WAL, and the database file keeps its old, possibly bloated,
// size until a checkpoint copies the WAL back and truncates the file. SQLite
// checkpoints by itself only once the WAL holds 1000 pages (4 MiB), which a
// small database's VACUUM does not reach, and kine after its first
// compaction, 5 minutes later: until then a database left bloated by an
// older version would keep its size.
func checkpointWAL(ctx context.Context, db *sql.DB) error {
	// busy is 1 when readers or writers kept the checkpoint from finishing.
	var busy, walFrames, checkpointed int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &walFrames, &checkpointed); err != nil {
		return fmt.Errorf("checkpoint the WAL after kine's startup VACUUM: %w", err)
	}
	if busy != 0 {
		return fmt.Errorf("checkpoint the WAL after kine's startup VACUUM: %d of %d pages copied, the database was busy", checkpointed, walFrames)
	}
	return nil
}
