package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/release"
)

// releaseArtifact is the artifact scripts/build wrote beside the binary
// under test: dist/skiff-<arch> of the same tree.
func releaseArtifact(t *testing.T) string {
	t.Helper()
	path := filepath.Join(filepath.Dir(filepath.Dir(skiffBin)), "dist", "skiff-"+runtime.GOARCH)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no release artifact beside %s (%v): scripts/build writes it", skiffBin, err)
	}
	return path
}

// TestReleaseArtifact starts a node from the file install.sh downloads, on
// a fresh data dir: the launcher unpacks its binary once into the data
// dir's content folder and execs it; the node runs its pods; a restart
// runs the unpacked binary without unpacking again; a damaged download is
// refused with a message and leaves nothing behind.
func TestReleaseArtifact(t *testing.T) {
	artifact := releaseArtifact(t)
	payload := readPayload(t, artifact)

	s := newNode(t)
	s.bin = artifact
	s.start()
	s.waitReady()
	s.waitNodeReady(2 * time.Minute)
	s.waitSystemPodsReady("k8s-app=kube-dns", 1, 3*time.Minute)

	unpacked := filepath.Join(s.paths().HelpersDir, payload.Hash(), "skiff")
	if got := fileSHA(t, unpacked); got != payload.Hash() {
		t.Fatalf("unpacked binary %s has SHA-256 %s, the artifact names %s", unpacked, got, payload.Hash())
	}
	// The launcher execs the binary: the server process is the unpacked
	// binary, with no launcher left running above it.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.cmd.Process.Pid)); err != nil || exe != unpacked {
		t.Errorf("the server process runs %q (%v), want %s", exe, err, unpacked)
	}
	if want, got := versionOf(t, skiffBin), versionOf(t, unpacked); got != want {
		t.Errorf("unpacked binary reports %q, the binary under test %q", got, want)
	}
	before, err := os.Stat(unpacked)
	if err != nil {
		t.Fatal(err)
	}

	s.stop()
	s.start()
	s.waitReady()
	s.waitNodeReady(2 * time.Minute)
	after, err := os.Stat(unpacked)
	if err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("a warm start unpacked the binary again (%v)", err)
	}
	entries, err := os.ReadDir(filepath.Dir(unpacked))
	if err != nil || len(entries) != 1 {
		t.Errorf("the content folder holds %d entries (%v), want only the binary", len(entries), err)
	}

	t.Run("damaged", func(t *testing.T) {
		b, err := os.ReadFile(artifact)
		if err != nil {
			t.Fatal(err)
		}
		b[payload.Offset+payload.Size/2] ^= 0xff
		damaged := filepath.Join(t.TempDir(), "skiff-"+runtime.GOARCH)
		if err := os.WriteFile(damaged, b, 0o755); err != nil {
			t.Fatal(err)
		}
		dataDir := filepath.Join(t.TempDir(), "data")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, damaged, "server", "--data-dir", dataDir).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "damaged") || !strings.Contains(string(out), "download it again") {
			t.Fatalf("a damaged artifact ran: %v: %s", err, out)
		}
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 {
			t.Errorf("want one line naming cause and fix, got: %s", out)
		}
		if _, err := os.Stat(filepath.Join(layout.New(dataDir).HelpersDir, payload.Hash(), "skiff")); err == nil {
			t.Error("a damaged artifact left an unpacked binary")
		}
	})
}

func readPayload(t *testing.T, artifact string) release.Payload {
	t.Helper()
	f, err := os.Open(artifact)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	p, err := release.ReadPayload(f, st.Size())
	if err != nil {
		t.Fatalf("%s: %v", artifact, err)
	}
	return p
}

func versionOf(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	return string(bytes.TrimSpace(out))
}
