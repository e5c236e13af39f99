package snapshot

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// newDatastore creates the embedded datastore of a data dir the way a
// running server holds it: kine's table in WAL mode, its rows still in the
// write-ahead log of the returned open connection.
func newDatastore(t *testing.T, keys ...string) (dataDir string, db *sql.DB) {
	t.Helper()
	dataDir = t.TempDir()
	path := dbPath(dataDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqliteURI(path, "_pragma=journal_mode(WAL)"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB)"); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := db.Exec("INSERT INTO kine (name, value) VALUES (?, ?)", k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	return dataDir, db
}

// kineKeys lists the names in the kine table of the SQLite file at path.
func kineKeys(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteURI(path, "mode=ro"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT name FROM kine ORDER BY id")
	if err != nil {
		t.Fatalf("read kine table of %s: %v", path, err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestSaveToAwkwardPaths: the snapshot path is bound as an SQL parameter
// and escaped in the SQLite URI, so quotes, spaces and URI syntax in it
// name the file and nothing else.
func TestSaveToAwkwardPaths(t *testing.T) {
	keys := []string{"/registry/a", "/registry/b"}
	dataDir, _ := newDatastore(t, keys...)
	for _, name := range []string{
		"it's a snap shot.db",
		`quote ' and "double" and ''; DROP TABLE kine; --.db`,
		"uri ?mode=rw #frag 100%.db",
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "snap dir's")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, name)
			if err := Save(context.Background(), dataDir, out); err != nil {
				t.Fatalf("Save to %q: %v", out, err)
			}
			if got := kineKeys(t, out); !slices.Equal(got, keys) {
				t.Errorf("snapshot holds %v, want %v", got, keys)
			}
			fi, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("snapshot mode %v, want 0600", fi.Mode().Perm())
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{name}) {
				t.Errorf("snapshot dir holds %q, want only the snapshot", got)
			}
			if err := Save(context.Background(), dataDir, out); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("second Save to the same path: %v, want an \"already exists\" error", err)
			}
		})
	}
	if got := kineKeys(t, dbPath(dataDir)); !slices.Equal(got, keys) {
		t.Errorf("the datastore itself holds %v after the snapshots, want %v", got, keys)
	}
}

// TestRestoreRoundTrip restores a snapshot over another datastore whose
// write-ahead log must not be replayed onto it.
func TestRestoreRoundTrip(t *testing.T) {
	keys := []string{"/registry/kept/1", "/registry/kept/2", "/registry/kept/3"}
	source, _ := newDatastore(t, keys...)
	snap := filepath.Join(t.TempDir(), "snapshot.db")
	if err := Save(context.Background(), source, snap); err != nil {
		t.Fatal(err)
	}

	target, db := newDatastore(t, "/registry/old")
	db.Close()
	dst := dbPath(target)
	if err := os.WriteFile(dst+"-wal", []byte("stale write-ahead log"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Restore(context.Background(), target, snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := kineKeys(t, dst); !slices.Equal(got, keys) {
		t.Errorf("restored datastore holds %v, want %v", got, keys)
	}
	for _, name := range dirNames(t, filepath.Dir(dst)) {
		if strings.Contains(name, "restore") {
			t.Errorf("restore left %s behind", name)
		}
	}

	// Into a fresh data dir, too.
	fresh := t.TempDir()
	if err := Restore(context.Background(), fresh, snap); err != nil {
		t.Fatalf("Restore into an empty data dir: %v", err)
	}
	if got := kineKeys(t, dbPath(fresh)); !slices.Equal(got, keys) {
		t.Errorf("restored datastore holds %v, want %v", got, keys)
	}
}

func TestRestoreRefusesWhatIsNoSnapshot(t *testing.T) {
	dir := t.TempDir()
	notSQLite := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(notSQLite, []byte("this is not a database, just text long enough to pass for a header\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	otherDB := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", sqliteURI(otherDB, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE notes (body TEXT)"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for _, tc := range []struct{ file, want string }{
		{notSQLite, notSQLite + " is not a skiff datastore snapshot: it is not an SQLite database file"},
		{empty, empty + " is not a skiff datastore snapshot: it is not an SQLite database file"},
		{otherDB, otherDB + " is not a skiff datastore snapshot (no kine table)"},
		{filepath.Join(dir, "missing.db"), "open snapshot"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			dataDir, _ := newDatastore(t, "/registry/untouched")
			err := Restore(context.Background(), dataDir, tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore(%s): %v, want an error containing %q", tc.file, err, tc.want)
			}
			if got := kineKeys(t, dbPath(dataDir)); !slices.Equal(got, []string{"/registry/untouched"}) {
				t.Errorf("refused restore changed the datastore: %v", got)
			}
			for _, name := range dirNames(t, filepath.Dir(dbPath(dataDir))) {
				if strings.Contains(name, "restore") {
					t.Errorf("refused restore left %s behind", name)
				}
			}
		})
	}

	// A refused snapshot does not create a data dir's database dir.
	fresh := t.TempDir()
	if err := Restore(context.Background(), fresh, notSQLite); err == nil {
		t.Fatal("Restore of a text file succeeded")
	}
	if _, err := os.Stat(filepath.Join(fresh, "server")); !os.IsNotExist(err) {
		t.Errorf("refused restore created %s (%v)", filepath.Join(fresh, "server"), err)
	}
}
