// Package snapshot copies the embedded SQLite datastore to a single,
// consistent file while the server runs, and puts such a file back while
// it is stopped.
package snapshot

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/skiff-io/skiff/pkg/fileutil"
	"github.com/skiff-io/skiff/pkg/layout"
)

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

func dbPath(dataDir string) string     { return layout.New(dataDir).Server.StateDB }
func socketPath(dataDir string) string { return layout.New(dataDir).Server.KineSocket }

// Save writes a consistent copy of the datastore of dataDir to out. It
// works while the server runs: SQLite's VACUUM INTO reads one snapshot of
// the database, so writes made meanwhile are either wholly in it or not.
func Save(ctx context.Context, dataDir, out string) error {
	src := dbPath(dataDir)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("no embedded datastore at %s (is --data-dir right, and does the server use SQLite?): %w", src, err)
	}
	// SQLite reads the file name as a C string: past a NUL it would write
	// somewhere else than asked.
	if strings.ContainsRune(out, 0) {
		return fmt.Errorf("snapshot path %q must not contain a NUL byte", out)
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s already exists; choose a new file name", out)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("resolve snapshot path %s: %w", out, err)
	}
	// The temp file lives beside the target so the final rename is atomic
	// and a crash never leaves a half-written snapshot under the real name.
	tmp := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".partial")
	_ = os.Remove(tmp)

	db, err := sql.Open("sqlite", sqliteURI(src, "mode=ro&_pragma=busy_timeout(30000)"))
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer db.Close()
	// A bound parameter, never text pasted into the statement: any byte of
	// the path stays part of the file name.
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("copy datastore to %s: %w", tmp, err)
	}
	if err := check(ctx, tmp, abs); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restrict %s to its owner: %w", tmp, err)
	}
	if err := fileutil.Sync(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, abs); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("move snapshot into place at %s: %w", abs, err)
	}
	return fileutil.Sync(filepath.Dir(abs))
}

// Restore replaces the datastore of a stopped server with snapshot.
func Restore(ctx context.Context, dataDir, snapshot string) error {
	if running(socketPath(dataDir)) {
		return errors.New("the skiff server using this data dir is running; stop it before restoring")
	}
	dst := dbPath(dataDir)
	// The copy is checked rather than the original, so what gets installed
	// is exactly what passed the check even if the snapshot file changes
	// meanwhile.
	tmp, err := copyToTemp(snapshot, filepath.Dir(dst))
	if err != nil {
		return err
	}
	installed := false
	defer func() {
		if !installed {
			_ = os.Remove(tmp)
		}
	}()
	if err := check(ctx, tmp, snapshot); err != nil {
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
	installed = true
	return fileutil.Sync(filepath.Dir(dst))
}

// copyToTemp streams snapshot into a new owner-only file in dir and syncs
// it to disk, so a snapshot of any size costs no memory and a crash leaves
// at most a stray temp file, never a half-written database. It refuses a
// file that does not start as an SQLite database does before creating dir.
func copyToTemp(snapshot, dir string) (string, error) {
	in, err := os.Open(snapshot)
	if err != nil {
		return "", fmt.Errorf("open snapshot: %w", err)
	}
	defer in.Close()
	header := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(in, header); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read snapshot %s: %w", snapshot, err)
	}
	if !bytes.Equal(header, sqliteHeader) {
		return "", fmt.Errorf("%s is not a skiff datastore snapshot: it is not an SQLite database file", snapshot)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create database dir: %w", err)
	}
	out, err := os.CreateTemp(dir, "state.db.restore-*")
	if err != nil {
		return "", fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	tmp := out.Name()
	fail := func(err error) (string, error) {
		out.Close()
		_ = os.Remove(tmp)
		return "", err
	}
	if _, err := io.Copy(out, io.MultiReader(bytes.NewReader(header), in)); err != nil {
		return fail(fmt.Errorf("copy %s to %s: %w", snapshot, tmp, err))
	}
	if err := out.Sync(); err != nil {
		return fail(fmt.Errorf("sync %s: %w", tmp, err))
	}
	if err := out.Close(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	return tmp, nil
}

// check proves the file at path is a sound SQLite database holding kine's
// table; errors name it as shownAs, the file the user knows.
func check(ctx context.Context, path, shownAs string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", sqliteURI(abs, "mode=ro"))
	if err != nil {
		return fmt.Errorf("open %s: %w", shownAs, err)
	}
	defer db.Close()
	var result string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&result); err != nil {
		return fmt.Errorf("%s is not a skiff datastore snapshot: %w", shownAs, err)
	}
	if result != "ok" {
		return fmt.Errorf("%s is damaged: %s", shownAs, result)
	}
	var rows int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM kine").Scan(&rows); err != nil {
		return fmt.Errorf("%s is not a skiff datastore snapshot (no kine table): %w", shownAs, err)
	}
	return nil
}

// sqliteURI names the absolute path as an SQLite URI filename with query.
// Escaping the path keeps a '?', '#' or '%' in it from being read as the
// start of the query, a fragment or an escape.
func sqliteURI(path, query string) string {
	return (&url.URL{Scheme: "file", Path: path, RawQuery: query}).String()
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
