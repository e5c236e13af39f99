package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
)

var (
	// ReadyTimeout bounds how long Start waits for containerd to serve.
	ReadyTimeout = 60 * time.Second
	// StopTimeout is how long containerd gets to exit after SIGTERM before
	// it is killed.
	StopTimeout = 10 * time.Second
)

// Process runs containerd as a child process of skiff. Pods survive its
// restarts: their shims are separate daemons.
type Process struct {
	Config
	// Command is the program and leading arguments that run containerd;
	// default [os.Executable(), "containerd"], i.e. skiff's own Main. The
	// flags --config, --address (and --log-level) are appended.
	Command []string

	pid atomic.Int64 // the running containerd's, for the tests
}

// Name implements the component interface.
func (p *Process) Name() string { return "containerd" }

// Start writes the configuration, starts containerd and returns once it
// answers on its socket. containerd runs until ctx is cancelled; the
// returned channel then receives nil, and is closed. A containerd that
// exits on its own is started again (pods live on in their shims, and the
// kubelet reconnects); only one that keeps exiting, or cannot be started
// again, ends the component with an error. Errors do not repeat "start
// containerd", which the component runner adds.
//
// containerd gets SIGKILL when the OS thread that started it exits. Go
// keeps threads alive unless a goroutine exits while locked to one, so
// Start must not be called from a goroutine that uses runtime.LockOSThread.
func (p *Process) Start(ctx context.Context) (<-chan error, error) {
	// The rewrite proxies serve containerd for as long as skiff runs it.
	var proxies *rewriteProxies
	configPath, c, err := writeConfig(p.Config, func(regs *Registries) (err error) {
		proxies, err = startRewriteProxies(regs)
		return err
	})
	if err != nil {
		proxies.Close()
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			proxies.Close()
		}
	}()
	for _, d := range []string{c.RootDir, c.StateDir, filepath.Dir(c.Address), filepath.Dir(c.LogFile)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	argv := p.Command
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		argv = []string{exe, "containerd"}
	}
	argv = append(append([]string(nil), argv...), "--config", configPath, "--address", c.Address)
	if c.Debug {
		argv = append(argv, "--log-level", "debug")
	}

	child, err := p.launch(ctx, c, argv)
	if err != nil {
		return nil, err
	}
	if err := setDefaultSnapshotter(ctx, c.Address, c.Snapshotter); err != nil {
		stop(child.cmd, child.exited)
		return nil, err
	}
	logrus.Infof("containerd is serving on %s (snapshotter %s)", c.Address, c.Snapshotter)

	started = true
	done := make(chan error, 1)
	go func() {
		defer close(done)
		defer proxies.Close()
		var exits []time.Time // recent unexpected exits
		for {
			select {
			case <-ctx.Done():
				stop(child.cmd, child.exited)
				done <- nil
				return
			case err := <-child.exited:
				reason := fmt.Sprintf("containerd exited unexpectedly (%s)%s", exitReason(err), logSummary(c.LogFile, child.logStart))
				now := time.Now()
				exits = slices.DeleteFunc(append(exits, now), func(t time.Time) bool { return now.Sub(t) > RestartWindow })
				if len(exits) > MaxRestarts {
					done <- fmt.Errorf("%s; it exited %d times within %s, so skiff stops instead of starting it again", reason, len(exits), RestartWindow)
					return
				}
				logrus.Warnf("%s; starting it again", reason)
				select {
				case <-ctx.Done():
					done <- nil
					return
				case <-time.After(time.Duration(len(exits)-1) * time.Second):
				}
				if child, err = p.launch(ctx, c, argv); err != nil {
					if ctx.Err() != nil {
						done <- nil
					} else {
						done <- fmt.Errorf("start containerd again: %w", err)
					}
					return
				}
				logrus.Infof("containerd is serving again on %s", c.Address)
			}
		}
	}()
	return done, nil
}

// MaxRestarts is how many unexpected exits of containerd within
// RestartWindow skiff answers by starting it again; one more ends the
// node with the error.
var (
	MaxRestarts   = 5
	RestartWindow = 10 * time.Minute
)

// child is one containerd process.
type child struct {
	cmd      *exec.Cmd
	exited   <-chan error
	logStart int64 // where its lines begin in the log file
}

// launch starts containerd and returns once it answers on its socket.
func (p *Process) launch(ctx context.Context, c Config, argv []string) (*child, error) {
	if err := clearSocket(ctx, c.Address); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open containerd log file: %w", err)
	}
	defer logf.Close() // the child has its own copy
	logStart, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "---- %s skiff: starting containerd: %s\n", time.Now().Format(time.RFC3339), strings.Join(argv, " "))

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = childEnv(c.BinDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a Ctrl-C on skiff's terminal reaches skiff,
		// which then stops containerd in order.
		Setpgid: true,
		// containerd dies with skiff even on kill -9; pods live on in
		// their shims and the next start reconnects to them.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.pid.Store(int64(cmd.Process.Pid))
	logrus.Infof("containerd started (pid %d), logging to %s", cmd.Process.Pid, c.LogFile)

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	if err := waitReady(ctx, c.Address, exited); err != nil {
		if errors.Is(err, errExited) {
			return nil, fmt.Errorf("%w%s", err, logSummary(c.LogFile, logStart))
		}
		stop(cmd, exited)
		return nil, fmt.Errorf("%w; see %s", err, c.LogFile)
	}
	return &child{cmd: cmd, exited: exited, logStart: logStart}, nil
}

var errExited = errors.New("containerd exited")

// waitReady polls until containerd answers a Version call.
func waitReady(ctx context.Context, address string, exited <-chan error) error {
	deadline := time.NewTimer(ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("%w during startup (%v)", errExited, exitReason(err))
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("containerd did not answer on %s within %s", address, ReadyTimeout)
		case <-tick.C:
		}
		if _, err := os.Stat(address); err != nil {
			continue
		}
		if answers(ctx, address) {
			return nil
		}
	}
}

// answers reports whether a containerd serves on address.
func answers(ctx context.Context, address string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl, err := containerd.New(address, containerd.WithTimeout(2*time.Second))
	if err != nil {
		return false
	}
	defer cl.Close()
	_, err = cl.Version(ctx)
	return err == nil
}

// clearSocket removes a socket left by a containerd that is gone. A
// containerd still serving there would hold the database lock, so that is
// reported instead.
func clearSocket(ctx context.Context, address string) error {
	if _, err := os.Stat(address); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// A containerd killed with skiff may need a moment to go away.
	for i := 0; answers(ctx, address); i++ {
		if i == 10 {
			return fmt.Errorf("another containerd is already serving on %s; stop it, or give skiff a different socket and data dir", address)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, s := range []string{address, address + ".ttrpc"} {
		if err := os.Remove(s); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale socket: %w", err)
		}
	}
	return nil
}

// setDefaultSnapshotter labels the CRI namespace so that clients which do
// not name a snapshotter (ctr, ImportArchive) unpack into the one the CRI
// plugin uses.
func setDefaultSnapshotter(ctx context.Context, address, snapshotter string) error {
	cl, err := containerd.New(address)
	if err != nil {
		return err
	}
	defer cl.Close()
	ns := cl.NamespaceService()
	labels := map[string]string{defaults.DefaultSnapshotterNSLabel: snapshotter}
	err = ns.Create(ctx, Namespace, labels)
	if errdefs.IsAlreadyExists(err) {
		err = ns.SetLabel(ctx, Namespace, defaults.DefaultSnapshotterNSLabel, snapshotter)
	}
	if err != nil {
		return fmt.Errorf("set default snapshotter of namespace %s: %w", Namespace, err)
	}
	return nil
}

// stop asks containerd to exit and kills it if it does not in time.
func stop(cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(StopTimeout):
	}
	logrus.Warnf("containerd did not exit within %s of SIGTERM; killing it", StopTimeout)
	_ = cmd.Process.Kill()
	<-exited
}

func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// childEnv is skiff's environment with binDir first in PATH, where
// containerd looks for containerd-shim-runc-v2.
func childEnv(binDir string) []string {
	env := make([]string, 0, len(os.Environ())+1)
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if binDir != "" {
		path = binDir + string(os.PathListSeparator) + path
	}
	for _, kv := range os.Environ() {
		// NOTIFY_SOCKET belongs to skiff: containerd would otherwise tell
		// systemd that skiff is ready before it is.
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PATH="+path)
}

// logSummary quotes the log's last line, which is usually containerd's
// own reason for exiting, and then the lines before it for context.
func logSummary(path string, offset int64) string {
	tail := logTail(path, offset)
	last := tail[strings.LastIndexByte(tail, '\n')+1:]
	return fmt.Sprintf(": %s\nlast lines of %s:\n%s", last, path, tail)
}

// logTail returns the last lines written to the log since offset.
func logTail(path string, offset int64) string {
	const max = 4096
	f, err := os.Open(path)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size()-offset > max {
		offset = st.Size() - max
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
