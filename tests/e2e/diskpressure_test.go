package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDiskPressureSparesSystemPods fills the filesystem of a node's data
// dir, where containerd keeps its images (the kubelet's imagefs), below the
// kubelet's eviction threshold: the node reports DiskPressure and evicts an
// ordinary pod, while every system pod keeps running, with no restart, and
// every system image stays. Once space returns, the pressure clears by
// itself and pods run again.
func TestDiskPressureSparesSystemPods(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small filesystem for the data dir needs root")
	}
	// Cleanups run last-registered first: this one, registered before
	// newNode's, unmounts the data dir once the node is stopped and cleaned
	// up, unless that cleanup, which unmounts everything under the test's
	// folder, already did.
	var mounted string
	t.Cleanup(func() {
		if mounted == "" {
			return
		}
		if err := syscall.Unmount(mounted, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			t.Errorf("unmount %s: %v", mounted, err)
		}
	})
	// The pressure is reported until the signal has been gone this long;
	// the default, 5 minutes, would only slow the test down.
	s := newNode(t, "--kubelet-arg=eviction-pressure-transition-period=20s")
	if err := syscall.Mount("tmpfs", s.dataDir, "tmpfs", 0, "size=2g,mode=0700"); err != nil {
		t.Fatalf("mount a 2 GiB tmpfs on %s: %v", s.dataDir, err)
	}
	mounted = s.dataDir
	// newNode put the test images into the data dir the tmpfs now hides.
	if err := os.MkdirAll(s.imagesDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	set := testImages(t)
	for _, name := range []string{webImageV1, webImageV2} {
		copyFile(t, set.tars[name], filepath.Join(s.imagesDir(), filepath.Base(set.tars[name])))
	}

	s.start()
	s.waitReady()
	node := s.waitNodeReady(2 * time.Minute)
	s.waitSystemPodsReady("k8s-app=kube-dns", 1, 3*time.Minute)
	systemBefore := s.waitSystemPodsSettled(3 * time.Minute)
	s.kubectl("run", "ordinary", "--image="+webImageV1, "--port=8080", "--image-pull-policy=Never")
	s.waitPod("default", "ordinary", 2*time.Minute, podInfo.running)
	systemImages := s.systemImages()

	// Leave 2% of the filesystem free: under the 5% threshold, above what
	// the datastore and the kubelet's own writes need meanwhile.
	filler := filepath.Join(s.dataDir, "filler")
	fillTo(t, s.dataDir, filler, 0.02)
	began := time.Now()
	eventually(t, 2*time.Minute, func() error {
		return s.nodeCondition(node.Metadata.Name, "DiskPressure", "True")
	})
	t.Logf("DiskPressure %s after the disk filled", time.Since(began).Round(time.Second))
	// An evicted pod's phase follows its container's exit (the test's web
	// program exits 0 on SIGTERM): the eviction shows in its Event.
	eventually(t, 3*time.Minute, func() error {
		out, err := s.kubectlErr("get", "events", "--field-selector", "involvedObject.name=ordinary,reason=Evicted", "-o", "name")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return fmt.Errorf("pod ordinary was not evicted")
		}
		return nil
	})
	t.Logf("the ordinary pod was evicted %s after the disk filled", time.Since(began).Round(time.Second))
	// The kubelet evicts one pod at a time, every 10 s, as long as the
	// pressure lasts: give it time to get to the system pods, were it to.
	time.Sleep(40 * time.Second)
	if err := s.nodeCondition(node.Metadata.Name, "DiskPressure", "True"); err != nil {
		t.Fatalf("the pressure ended by itself: %v", err)
	}
	s.checkSystemPodsUnchanged(systemBefore)
	if after := s.systemImages(); strings.Join(after, " ") != strings.Join(systemImages, " ") {
		t.Errorf("system images before the pressure: %q; during it: %q", systemImages, after)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	eventually(t, 2*time.Minute, func() error {
		return s.nodeCondition(node.Metadata.Name, "DiskPressure", "False")
	})
	t.Logf("DiskPressure cleared %s after the space was freed", time.Since(began).Round(time.Second))
	s.kubectl("delete", "pod", "ordinary", "--wait=false")
	s.kubectl("run", "after", "--image="+webImageV1, "--port=8080", "--image-pull-policy=Never")
	s.waitPod("default", "after", 2*time.Minute, podInfo.running)
	s.checkSystemPodsUnchanged(systemBefore)
}

// fillTo writes path until the filesystem of dir has only the fraction
// free of its size.
func fillTo(t *testing.T, dir, path string, free float64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	size := int64(st.Blocks) * st.Bsize
	avail := int64(st.Bavail) * st.Bsize
	n := avail - int64(float64(size)*free)
	if n <= 0 {
		t.Fatalf("%s has %d of %d bytes free already", dir, avail, size)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for written := int64(0); written < n; {
		c := chunk
		if n-written < int64(len(c)) {
			c = c[:n-written]
		}
		m, err := f.Write(c)
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
		written += int64(m)
	}
}

// nodeCondition says whether node's condition typ has status want.
func (s *server) nodeCondition(node, typ, want string) error {
	out, err := s.kubectlErr("get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\""+typ+"\")].status}")
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(out); got != want {
		return fmt.Errorf("node %s: %s is %q, want %q", node, typ, got, want)
	}
	return nil
}

// systemPod is what identifies a run of a kube-system pod.
type systemPod struct {
	uid      string
	restarts int
}

// restarts is the sum of the restarts of p's containers.
func (p podInfo) restarts() int {
	n := 0
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// waitSystemPodsSettled waits until every kube-system pod but finished
// jobs runs and is ready, and returns them by name.
func (s *server) waitSystemPodsSettled(timeout time.Duration) map[string]systemPod {
	s.t.Helper()
	var got map[string]systemPod
	eventually(s.t, timeout, func() error {
		pods, err := s.pods("kube-system", "")
		if err != nil {
			return err
		}
		got = map[string]systemPod{}
		for _, p := range pods {
			if p.Status.Phase == "Succeeded" {
				continue
			}
			if err := p.running(); err != nil {
				return err
			}
			got[p.Metadata.Name] = systemPod{uid: p.Metadata.UID, restarts: p.restarts()}
		}
		// CoreDNS, the ingress controller, local-path and metrics-server.
		if len(got) < 4 {
			return fmt.Errorf("%d system pods run, want the 4 addons' at least", len(got))
		}
		return nil
	})
	return got
}

// checkSystemPodsUnchanged fails the test unless the system pods of before
// all still run as the same pods, not restarted.
func (s *server) checkSystemPodsUnchanged(before map[string]systemPod) {
	s.t.Helper()
	pods, err := s.pods("kube-system", "")
	if err != nil {
		s.t.Fatal(err)
	}
	now := map[string]podInfo{}
	for _, p := range pods {
		now[p.Metadata.Name] = p
	}
	for name, b := range before {
		p, ok := now[name]
		if !ok {
			s.t.Errorf("system pod %s is gone", name)
			continue
		}
		if err := p.running(); err != nil {
			s.t.Errorf("system pod %s: %v", name, err)
		}
		if restarts := p.restarts(); p.Metadata.UID != b.uid || restarts != b.restarts {
			s.t.Errorf("system pod %s was replaced or restarted (uid %s, %d restarts; before %s, %d)", name, p.Metadata.UID, restarts, b.uid, b.restarts)
		}
	}
}

// systemImages lists the node's images named under skiff.local/system.
func (s *server) systemImages() []string {
	s.t.Helper()
	out := runTool(s.t, []string{"SKIFF_DATA_DIR=" + s.dataDir}, "crictl", "images")
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(f[0], "skiff.local/system/") {
			names = append(names, f[0]+":"+f[1])
		}
	}
	sort.Strings(names)
	if len(names) < 5 {
		s.t.Fatalf("the node has %d system images, want the addons' at least:\n%s", len(names), out)
	}
	return names
}
