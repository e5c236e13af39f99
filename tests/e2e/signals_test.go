package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestToolsStopOnOneSignal runs the embedded kubectl as a user would, as
// `skiff kubectl` and through a kubectl symlink, and checks that one
// SIGINT or one SIGTERM stops it, as it stops the stock binary: skiff's
// orderly shutdown, which waits for a second signal to exit at once,
// belongs to its own long-running commands only.
func TestToolsStopOnOneSignal(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	// kubectl proxy only connects on a request, so any server will do.
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "kubectl")
	if err := os.Symlink(skiffBin, link); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, argv := range [][]string{
			{skiffBin, "kubectl", "proxy", "--port=0", "--kubeconfig", kubeconfig},
			{link, "proxy", "--port=0", "--kubeconfig", kubeconfig},
		} {
			t.Run(fmt.Sprintf("%s %s", filepath.Base(argv[0]), sig), func(t *testing.T) {
				cmd := exec.Command(argv[0], argv[1:]...)
				cmd.Env = append(os.Environ(), "SKIFF_CONFIG_FILE=")
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stderr = cmd.Stdout
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = cmd.Process.Kill() }()
				serving := make(chan string, 1)
				go func() {
					s := bufio.NewScanner(out)
					var seen []string
					for s.Scan() {
						seen = append(seen, s.Text())
						if strings.Contains(s.Text(), "Starting to serve on") {
							serving <- ""
						}
					}
					serving <- strings.Join(seen, "\n")
				}()
				select {
				case got := <-serving:
					if got != "" {
						t.Fatalf("kubectl proxy exited before serving:\n%s", got)
					}
				case <-time.After(time.Minute):
					t.Fatal("kubectl proxy did not start serving within a minute")
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					t.Fatalf("still running 10 s after one %s", sig)
				}
			})
		}
	}
}
