package startpages

import (
	"os"
	"strings"
	"testing"
)

func TestReadOnlyMapping(t *testing.T) {
	const exe = "/var/lib/skiff/data/abc/bin/my program"
	for _, c := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"00400000-01a00000 r-xp 00000000 08:01 123 " + exe, 0x400000, 0x1a00000, true},
		{"01a00000-02000000 r--p 01600000 08:01 123 " + exe, 0x1a00000, 0x2000000, true},
		// Writable data: MADV_DONTNEED would discard its contents.
		{"02000000-02100000 rw-p 01c00000 08:01 123 " + exe, 0, 0, false},
		// Shared mappings and other files are not the program's.
		{"00400000-01a00000 r-xs 00000000 08:01 123 " + exe, 0, 0, false},
		{"00400000-01a00000 r-xp 00000000 08:01 124 /usr/lib/libc.so.6", 0, 0, false},
		{"7ffd0000-7ffd1000 r-xp 00000000 00:00 0 [vdso]", 0, 0, false},
		{"7ffd0000-7ffd1000 rw-p 00000000 00:00 0", 0, 0, false},
		{"garbage", 0, 0, false},
	} {
		start, end, ok := readOnlyMapping(c.line, exe)
		if ok != c.ok || start != c.start || end != c.end {
			t.Errorf("%q: got %#x-%#x %v, want %#x-%#x %v", c.line, start, end, ok, c.start, c.end, c.ok)
		}
	}
}

// TestRelease releases the test binary's own pages and checks that it
// keeps running the code it needs afterwards, and that its resident
// executable pages went down.
func TestRelease(t *testing.T) {
	before := residentExecutable(t)
	r, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if r.Unmapped == 0 {
		t.Fatalf("nothing unmapped: %v", r)
	}
	after := residentExecutable(t)
	if after >= before {
		t.Errorf("resident pages of the executable: %d KiB before, %d KiB after", before, after)
	}
	if !strings.Contains(r.String(), r.Executable) {
		t.Errorf("report %q does not name the executable", r)
	}
}

// residentExecutable sums the resident KiB of the read-only mappings of
// the running executable, from /proc/self/smaps.
func residentExecutable(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	total, in := 0, false
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 {
			_, _, in = readOnlyMapping(line, exe)
			continue
		}
		if in && f[0] == "Rss:" && len(f) >= 2 {
			var kib int
			for _, c := range f[1] {
				kib = kib*10 + int(c-'0')
			}
			total += kib
		}
	}
	return total
}
