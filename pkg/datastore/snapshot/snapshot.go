// Package snapshot copies the embedded SQLite datastore to a single,
// consistent file while the server runs, and puts such a file back while
// it is stopped.
package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Paths of the embedded datastore under a data dir.
func dbPath(dataDir string) string     { return filepath.Join(dataDir, "server", "db", "state.db") }
func socketPath(dataDir string) string { return filepath.Join(dataDir, "server", "db", "kine.sock") }

// Save writes a consistent copy of the datastore of dataDir to out. It
// works while the server runs: SQLite's VACUUM INTO reads one snapshot of
// the database, so writes made meanwhile are either wholly in it or not.
func Save(ctx context.Context, dataDir, out string) error {
	src := dbPath(dataDir)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("no embedded datastore at %s (is --data-dir right, and does the server use SQLite?): %w", src, err)
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s already exists; choose a new file name", out)
	}
	if strings.ContainsAny(out, "'\x00") {
		return fmt.Errorf("snapshot path %q must not contain quotes", out)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	// The temp file lives beside the target so the final rename is atomic
	// and a crash never leaves a half-written snapshot under the real name.
	tmp := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".partial")
	_ = os.Remove(tmp)

	db, err := sql.Open("sqlite", "file:"+src+"?mode=ro&_pragma=busy_timeout(30000)")
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO '"+tmp+"'"); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("copy datastore: %w", err)
	}
	if err := check(ctx, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, abs)
}

// Restore replaces the datastore of a stopped server with snapshot.
func Restore(ctx context.Context, dataDir, snapshot string) error {
	if running(socketPath(dataDir)) {
		return errors.New("the skiff server using this data dir is running; stop it before restoring")
	}
	if err := check(ctx, snapshot); err != nil {
		return err
	}
	dst := dbPath(dataDir)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("create database dir: %w", err)
	}
	tmp := dst + ".restore"
	data, err := os.ReadFile(snapshot)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	// The old write-ahead log belongs to the old database: it must be gone
	// before the new file takes the name, or SQLite would replay it.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(dst + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old %s: %w", dst+suffix, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install snapshot: %w", err)
	}
	return nil
}

// check proves a file is a sound SQLite database holding kine's table.
func check(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var result string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&result); err != nil {
		return fmt.Errorf("%s is not a skiff datastore snapshot: %w", path, err)
	}
	if result != "ok" {
		return fmt.Errorf("%s is damaged: %s", path, result)
	}
	var rows int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM kine").Scan(&rows); err != nil {
		return fmt.Errorf("%s is not a skiff datastore snapshot (no kine table): %w", path, err)
	}
	return nil
}

// running reports whether kine answers on the data dir's socket.
func running(sock string) bool {
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
