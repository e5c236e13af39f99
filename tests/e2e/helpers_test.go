// Package e2e drives the built skiff binary the way a user does: it starts
// servers on temporary data dirs and free ports and checks what the cluster
// really did.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/tests/nodetest"
)

// skiffBin is the binary under test (SKIFF_BIN, or bin/skiff of this repo).
var skiffBin string

// atExit holds cleanups of what the tests of this process share (such as
// the test images); they run last to first after all tests.
var atExit []func()

func TestMain(m *testing.M) {
	skiffBin = os.Getenv("SKIFF_BIN")
	if skiffBin == "" {
		skiffBin, _ = filepath.Abs("../../bin/skiff")
	}
	if _, err := os.Stat(skiffBin); err != nil {
		fmt.Fprintf(os.Stderr, "skiff binary not found at %s: run `make build` or set SKIFF_BIN\n", skiffBin)
		os.Exit(1)
	}
	code := m.Run()
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	os.Exit(code)
}

// server is one `skiff server` process started by a test.
type server struct {
	t          *testing.T
	dataDir    string
	port       int
	kubeconfig string
	logPath    string
	args       []string
	// bin runs the server instead of skiffBin when set.
	bin    string
	cmd    *exec.Cmd
	exited <-chan struct{}
	// logStart is the log size when the current process started, so
	// readiness is judged on this run's lines only.
	logStart int
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := nodetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// newServer prepares (but does not start) a control-plane-only server.
func newServer(t *testing.T, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t:          t,
		dataDir:    filepath.Join(dir, "data"),
		port:       freePort(t),
		kubeconfig: filepath.Join(dir, "kubeconfig.yaml"),
		logPath:    filepath.Join(dir, "server.log"),
	}
	s.args = append([]string{"server",
		"--data-dir", s.dataDir,
		"--https-listen-port", fmt.Sprint(s.port),
		"--write-kubeconfig", s.kubeconfig,
		"--disable-agent",
		"--config", filepath.Join(dir, "no-config.yaml"),
	}, extra...)
	// An explicitly named config file must exist: give an empty one.
	if err := os.WriteFile(filepath.Join(dir, "no-config.yaml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			s.dumpLog()
		}
	})
	return s
}

func (s *server) start() {
	s.t.Helper()
	bin := s.bin
	if bin == "" {
		bin = skiffBin
	}
	cmd := exec.Command(bin, s.args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	exited, logStart, err := nodetest.StartLogged(cmd, s.logPath, "skiff "+strings.Join(s.args, " "))
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.exited, s.logStart = cmd, exited, logStart
}

// waitReady waits for the "cluster ready" line and a passing /readyz.
func (s *server) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.t.Fatalf("skiff server exited before it was ready (%v)", s.cmd.ProcessState)
		default:
		}
		if strings.Contains(s.log()[s.logStart:], "cluster ready: kubeconfig at "+s.kubeconfig) {
			out, err := s.kubectlErr("get", "--raw", "/readyz")
			if err == nil && strings.TrimSpace(out) == "ok" {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	s.t.Fatal("skiff server was not ready within 4 minutes")
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	if !nodetest.Terminate(s.cmd.Process, s.exited, 90*time.Second) {
		s.t.Fatal("skiff server did not stop within 90s of SIGTERM")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Fatalf("skiff server exited with %d after SIGTERM, want 0", code)
	}
	s.cmd = nil
}

// kill stops the server with SIGKILL, as a crash or power cut would.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *server) dumpLog() {
	l := s.log()
	if len(l) > 20000 {
		l = "...\n" + l[len(l)-20000:]
	}
	s.t.Logf("server log (%s):\n%s", s.logPath, l)
}

func (s *server) kubectlErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, skiffBin, append([]string{"kubectl", "--kubeconfig", s.kubeconfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (s *server) kubectl(args ...string) string {
	s.t.Helper()
	out, err := s.kubectlErr(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// runSkiff runs the binary to completion and returns its exit code and
// combined output.
func runSkiff(t *testing.T, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, skiffBin, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("skiff %s did not finish within %s:\n%s", strings.Join(args, " "), timeout, out)
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}
