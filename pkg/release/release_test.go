package release

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// artifact writes a launcher stand-in followed by program's payload to a
// file and returns it opened.
func artifact(t *testing.T, program []byte, damage func([]byte)) (*os.File, int64) {
	t.Helper()
	var compressed bytes.Buffer
	enc, err := zstd.NewWriter(&compressed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(program); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	launcher := []byte("\x7fELF a launcher stand-in")
	var out bytes.Buffer
	out.Write(launcher)
	if err := Append(&out, int64(len(launcher)), &compressed, sha256.Sum256(program)); err != nil {
		t.Fatal(err)
	}
	b := out.Bytes()
	if damage != nil {
		damage(b)
	}
	path := filepath.Join(t.TempDir(), "skiff-amd64")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, int64(len(b))
}

var program = bytes.Repeat([]byte("the skiff program, compressible "), 4096)

func TestUnpackVerifiesAndReusesTheBinary(t *testing.T) {
	f, size := artifact(t, program, nil)
	p, err := ReadPayload(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(program); p.Sum != want {
		t.Fatalf("payload names %x, want %x", p.Sum, want)
	}
	dir := t.TempDir()
	if _, ok := Unpacked(p, []string{dir}); ok {
		t.Fatal("unpacked before Unpack")
	}
	target, err := Unpack(f, p, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, p.Hash(), "skiff"); target != want {
		t.Errorf("unpacked to %s, want %s", target, want)
	}
	got, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(got, program) {
		t.Fatalf("unpacked program differs (%v)", err)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o755 {
		t.Errorf("unpacked program has mode %v", fi.Mode())
	}
	if found, ok := Unpacked(p, []string{t.TempDir(), dir}); !ok || found != target {
		t.Errorf("Unpacked found %q, %v", found, ok)
	}
	// A warm start does not read the payload: a file whose payload is
	// gone still resolves to the unpacked program.
	empty, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if again, err := Unpack(empty, p, dir); err != nil || again != target {
		t.Errorf("second Unpack: %s, %v", again, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(target))
	if len(entries) != 1 {
		t.Errorf("the content folder holds %d entries, want only the program", len(entries))
	}
}

func TestCorruptPayloadIsRefused(t *testing.T) {
	for name, damage := range map[string]func([]byte){
		// A flipped byte in the compressed stream.
		"stream": func(b []byte) { b[len(b)-trailerSize-20] ^= 0xff },
		// A payload that decompresses well but to another program.
		"sum": func(b []byte) { b[len(b)-1] ^= 0xff },
	} {
		t.Run(name, func(t *testing.T) {
			f, size := artifact(t, program, damage)
			p, err := ReadPayload(f, size)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			_, err = Unpack(f, p, dir)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Unpack of a damaged payload: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("error %q does not say the payload is corrupt", err)
			}
			// Nothing is left that a later start would take for the program.
			if _, ok := Unpacked(p, []string{dir}); ok {
				t.Error("a damaged payload left an unpacked program")
			}
			entries, _ := os.ReadDir(filepath.Join(dir, p.Hash()))
			if len(entries) != 0 {
				t.Errorf("a damaged payload left %d files", len(entries))
			}
		})
	}
}

func TestFileWithoutPayload(t *testing.T) {
	f, size := artifact(t, program, nil)
	for _, cut := range []int64{size - 1, size / 2, 10} {
		if _, err := ReadPayload(f, cut); !errors.Is(err, ErrNoPayload) {
			t.Errorf("file cut to %d bytes: %v, want ErrNoPayload", cut, err)
		}
	}
}

func TestUnpackDirs(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	home := env(map[string]string{"HOME": "/home/ann"})
	for _, c := range []struct {
		args []string
		env  func(string) string
		want []string
	}{
		{[]string{"/usr/local/bin/skiff", "server"}, home, []string{"/var/lib/skiff/data", "/home/ann/.cache/skiff/data"}},
		{[]string{"skiff", "server", "--data-dir", "/srv/skiff"}, home, []string{"/srv/skiff/data"}},
		{[]string{"skiff", "agent", "--data-dir=/srv/a", "--token", "x"}, home, []string{"/srv/a/data"}},
		{[]string{"skiff", "server", "-d", "/srv/d"}, home, []string{"/srv/d/data"}},
		{[]string{"skiff", "server"}, env(map[string]string{"SKIFF_DATA_DIR": "/srv/e"}), []string{"/srv/e/data"}},
		{[]string{"skiff", "server"}, env(map[string]string{"XDG_CACHE_HOME": "/c"}), []string{"/var/lib/skiff/data", "/c/skiff/data"}},
		// The arguments of embedded tools are theirs: ctr run -d detaches.
		{[]string{"skiff", "ctr", "run", "-d", "img", "id"}, home, []string{"/var/lib/skiff/data", "/home/ann/.cache/skiff/data"}},
		{[]string{"/usr/local/bin/kubectl", "-d", "x"}, home, []string{"/var/lib/skiff/data", "/home/ann/.cache/skiff/data"}},
	} {
		if got := UnpackDirs(c.args, c.env); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%q: %q, want %q", c.args, got, c.want)
		}
	}
}
