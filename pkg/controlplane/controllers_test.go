package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A server that loses the scheduler's lease and wins it back starts the
// scheduler again in the same process; that start must run like the first.
func TestSchedulerStartsAgainInTheSameProcess(t *testing.T) {
	// An apiserver nobody listens on: the scheduler's informers retry in
	// the background, which is all a start needs.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters:
- name: none
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: none
  context:
    cluster: none
    user: none
current-context: none
users:
- name: none
  user:
    token: none
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Scheduler{Args: []string{"--kubeconfig=" + kubeconfig, "--secure-port=0", "--leader-elect=false"}}
	for term := 1; term <= 2; term++ {
		ctx, cancel := context.WithCancel(context.Background())
		done, err := s.Start(ctx)
		if err != nil {
			cancel()
			t.Fatalf("start %d: %v", term, err)
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("start %d: the scheduler exited while running: %v", term, err)
		case <-time.After(2 * time.Second):
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("start %d: stopping: %v", term, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("start %d: the scheduler did not stop within 30 s", term)
		}
	}
}
