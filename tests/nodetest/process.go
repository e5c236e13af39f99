package nodetest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// StartLogged starts cmd with its output appended to the file logPath,
// after a line "===== header". It returns the log's size before that line
// (where this run's output begins) and a channel closed once the process
// has exited and been reaped (cmd.ProcessState is set then).
func StartLogged(cmd *exec.Cmd, logPath, header string) (exited <-chan struct{}, logStart int, err error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	if fi, err := logf.Stat(); err == nil {
		logStart = int(fi.Size())
	}
	fmt.Fprintf(logf, "\n===== %s\n", header)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, 0, err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	return done, logStart, nil
}

// Terminate sends SIGTERM to a process started by StartLogged and says
// whether it exited within timeout.
func Terminate(p *os.Process, exited <-chan struct{}, timeout time.Duration) bool {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// ExitStatus is a reaped process's exit status as a shell reports it:
// its exit code, or 128 + the signal that killed it.
func ExitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// FreePort returns a TCP port nothing listens on at the moment.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
