package mountinfo

import "testing"

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/a\040b\011c`:     "/var/lib/a b\tc",
		`/run/skiff/with\134slash`: `/run/skiff/with\slash`,
		`a\04`:                     `a\04`, // a truncated escape is kept as it is
		`/plain`:                   "/plain",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
