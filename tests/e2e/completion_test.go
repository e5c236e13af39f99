package e2e

import (
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCompletion loads `skiff completion bash` into bash as a user's shell
// would and completes skiff's commands and flags, and kubectl's through
// `skiff kubectl`.
func TestCompletion(t *testing.T) {
	code, script := runSkiff(t, time.Minute, "completion", "bash")
	if code != 0 {
		t.Fatalf("skiff completion bash: exit %d: %s", code, script)
	}
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("the bash completion does not parse: %v\n%s", err, out)
	}
	complete := func(words ...string) []string {
		t.Helper()
		// COMP_WORDS[0] is the binary under test; the last word is the one
		// being completed.
		line := "source /dev/stdin; COMP_WORDS=(" + shellWords(append([]string{skiffBin}, words...)) + "); " +
			"COMP_CWORD=" + strconv.Itoa(len(words)) + "; _skiff; printf '%s\\n' \"${COMPREPLY[@]}\""
		cmd := exec.Command("bash", "-c", line)
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("complete %q: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"se"}, "server"},
		{[]string{"cert"}, "certificate"},
		{[]string{"certificate", ""}, "check"},
		{[]string{"server", "--data"}, "--data-dir"},
		{[]string{"kubectl", "ge"}, "get"},
		{[]string{"kubectl", "get", "--all-n"}, "--all-namespaces"},
	} {
		if got := complete(tc.words...); !slices.Contains(got, tc.want) {
			t.Errorf("completing %q offers %q, want %s among them", tc.words, got, tc.want)
		}
	}

	for _, shell := range []string{"zsh", "fish"} {
		code, out := runSkiff(t, time.Minute, "completion", shell)
		if code != 0 || !strings.Contains(out, "skiff") {
			t.Errorf("skiff completion %s: exit %d:\n%s", shell, code, tail(out, 500))
		}
	}
	if code, out := runSkiff(t, time.Minute, "completion", "tcsh"); code == 0 || !strings.Contains(out, `unknown shell "tcsh"`) {
		t.Errorf("skiff completion tcsh: exit %d: %s", code, out)
	}
}

// shellWords quotes words for a bash array.
func shellWords(words []string) string {
	var out []string
	for _, w := range words {
		out = append(out, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
	}
	return strings.Join(out, " ")
}
