package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/tests/nodetest"
)

// TestSlowDiskLeases puts a node's data dir (the SQLite datastore,
// containerd's images) on a loop device, then throttles the writes to that
// device (a cgroup I/O limit: 10 writes and 1 MiB a second, a slow SD
// card) while a client keeps writing: the server keeps serving, slowly,
// no process of the node restarts, no system pod restarts, and once the
// disk is fast again the node is Ready and writes are quick, with no
// action.
func TestSlowDiskLeases(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a loop device and a cgroup I/O limit need root")
	}
	var mounted, loopDev string
	// Registered before newNode's cleanup, so it runs after it.
	t.Cleanup(func() {
		if mounted != "" {
			if err := syscall.Unmount(mounted, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
				t.Errorf("unmount %s: %v", mounted, err)
			}
		}
		if loopDev != "" {
			if out, err := exec.Command("losetup", "-d", loopDev).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v: %s", loopDev, err, out)
			}
		}
	})
	// After the cleanup above is registered, so that the limit is lifted
	// before the device goes.
	throttle := newBlkioThrottle(t)
	s := newNode(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 2<<30); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	loopDev = strings.TrimSpace(string(out))
	// Initialised now, not by the kernel in the background once mounted:
	// that would write to the device during the slow period.
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", loopDev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", loopDev, err, out)
	}
	if err := syscall.Mount(loopDev, s.dataDir, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", loopDev, s.dataDir, err)
	}
	mounted = s.dataDir
	if err := os.Chmod(s.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// newNode put the test images into the data dir the mount now hides.
	if err := os.MkdirAll(s.imagesDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	set := testImages(t)
	copyFile(t, set.tars[webImageV1], filepath.Join(s.imagesDir(), filepath.Base(set.tars[webImageV1])))

	s.start()
	s.waitReady()
	node := s.waitNodeReady(2 * time.Minute)
	systemBefore := s.waitSystemPodsSettled(3 * time.Minute)
	nodeProcs := s.nodeProcesses()

	cms := s.clientset().CoreV1().ConfigMaps("default")
	write := func(i int) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		began := time.Now()
		_, err := cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("slow-%04d", i)},
			Data:       map[string]string{"v": strings.Repeat("x", 4096)},
		}, metav1.CreateOptions{})
		return time.Since(began), err
	}
	fast, err := write(0)
	if err != nil {
		t.Fatal(err)
	}

	throttle.limit(t, loopDev)
	// SKIFF_SLOW_DISK_DURATION makes it a longer soak.
	duration := envDuration(t, "SKIFF_SLOW_DISK_DURATION", 60*time.Second)
	var latencies []time.Duration
	var failures []string
	notReady := time.Duration(0)
	began := time.Now()
	for i := 1; time.Since(began) < duration; i++ {
		d, err := write(i)
		if err != nil {
			failures = append(failures, err.Error())
		} else {
			latencies = append(latencies, d)
		}
		if err := s.nodeCondition(node.Metadata.Name, "Ready", "True"); err != nil && notReady == 0 {
			notReady = time.Since(began)
		}
		s.alive()
	}
	throttle.lift(t)
	written := throttle.written(t)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	if len(latencies) == 0 {
		t.Fatalf("no write succeeded on the slow disk in %s: %q", duration, failures)
	}
	t.Logf("slow disk (%s): %d writes acknowledged, median %s, max %s (%s before); %d failed; %d KiB written to the device meanwhile",
		duration, len(latencies), latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond),
		fast.Round(time.Millisecond), len(failures), written>>10)
	for _, f := range failures {
		t.Logf("a write failed: %s", f)
	}
	if notReady > 0 {
		t.Logf("the node was reported not Ready %s into the slow period", notReady.Round(time.Second))
	}
	if written == 0 {
		t.Fatal("nothing was written to the throttled device: the node's data dir is not on it")
	}

	recovered := time.Now()
	s.waitNodeReady(2 * time.Minute)
	eventually(t, time.Minute, func() error {
		d, err := write(100000 + int(time.Since(recovered)/time.Millisecond))
		if err != nil {
			return err
		}
		if d > time.Second {
			return fmt.Errorf("a write took %s", d)
		}
		return nil
	})
	t.Logf("writes quick and node Ready again %s after the disk was", time.Since(recovered).Round(time.Second))
	for _, p := range nodeProcs {
		if !nodetest.Alive(p) {
			t.Errorf("node process %d (%s) ended during the slow period", p, procName(p))
		}
	}
	if after := s.nodeProcesses(); len(after) != len(nodeProcs) {
		t.Errorf("node processes before the slow period %v, after %v: one was restarted", nodeProcs, after)
	}
	s.checkSystemPodsUnchanged(systemBefore)
	log := s.log()[s.logStart:]
	for _, bad := range []string{"leaderelection lost", "panic:", "level=fatal"} {
		if strings.Contains(log, bad) {
			t.Errorf("the server log has %q", bad)
		}
	}
}

// nodeProcesses is the node process and its children (containerd), not
// the pods' shims, which leave it.
func (s *server) nodeProcesses() []int {
	pids := []int{s.cmd.Process.Pid}
	for _, p := range nodetest.Children(nodetest.ListProcs(), s.cmd.Process.Pid) {
		pids = append(pids, p.PID)
	}
	sort.Ints(pids)
	return pids
}

func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// blkioThrottle limits the writes to one block device, the test's loop
// device, in the root cgroup v1 blkio group: for every process and for the
// kernel's write-back of dirty pages alike, as a slow disk would be.
type blkioThrottle struct {
	// dev is the device's "major:minor", once limited.
	dev string
	// before is what had been written to the device when it was limited.
	before int64
}

const blkioRoot = "/sys/fs/cgroup/blkio"

func newBlkioThrottle(t *testing.T) *blkioThrottle {
	t.Helper()
	if _, err := os.Stat(filepath.Join(blkioRoot, "blkio.throttle.write_iops_device")); err != nil {
		t.Skipf("no cgroup v1 blkio controller at %s (%v)", blkioRoot, err)
	}
	b := &blkioThrottle{}
	t.Cleanup(func() { b.lift(t) })
	return b
}

// limit throttles the writes to dev to 10 a second and 1 MiB/s.
func (b *blkioThrottle) limit(t *testing.T, dev string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	b.dev = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	b.before = b.writtenTotal(t)
	b.set(t, 10, 1<<20)
}

// set writes the limits; 0 removes one.
func (b *blkioThrottle) set(t *testing.T, iops, bps int) {
	t.Helper()
	for file, value := range map[string]int{
		"blkio.throttle.write_iops_device": iops,
		"blkio.throttle.write_bps_device":  bps,
	} {
		line := fmt.Sprintf("%s %d", b.dev, value)
		if err := os.WriteFile(filepath.Join(blkioRoot, file), []byte(line), 0o644); err != nil {
			t.Errorf("write %q to %s: %v", line, file, err)
		}
	}
}

// written is how many bytes were written to the device since limit.
func (b *blkioThrottle) written(t *testing.T) int64 {
	t.Helper()
	return b.writtenTotal(t) - b.before
}

func (b *blkioThrottle) writtenTotal(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(blkioRoot, "blkio.throttle.io_service_bytes_recursive"))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == b.dev && f[1] == "Write" {
			n, _ := strconv.ParseInt(f[2], 10, 64)
			total += n
		}
	}
	return total
}

// lift removes the limits: a later loop device with the same number must
// not inherit them.
func (b *blkioThrottle) lift(t *testing.T) {
	t.Helper()
	if b.dev != "" {
		b.set(t, 0, 0)
	}
}
