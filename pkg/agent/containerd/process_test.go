package containerd

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/pkg/bundle"
	"github.com/skiff-io/skiff/pkg/images"
	"github.com/skiff-io/skiff/pkg/layout"
)

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	b.WriteString("old run\n")
	offset := int64(b.Len())
	for i := range 30 {
		b.WriteString("line " + string(rune('a'+i%26)) + "\n")
	}
	writeRegistries(t, path, b.String())
	got := logTail(path, offset)
	lines := strings.Split(got, "\n")
	if len(lines) != 15 || strings.Contains(got, "old run") || lines[14] != "line d" {
		t.Fatalf("tail:\n%s", got)
	}
}

func TestStartFailsWithLog(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.Address = filepath.Join(dir, "c.sock")
	cfg.LogFile = filepath.Join(dir, "containerd.log")
	// A "containerd" that fails at once, as a bad config would make it.
	p := &Process{Config: cfg, Command: []string{"/bin/sh", "-c", "echo 'containerd: something is broken' >&2; exit 3", "sh"}}
	_, err := p.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "containerd: something is broken") {
		t.Fatalf("error %v, want the exit status and the log tail", err)
	}
}

// realContainerdConfig makes the test binary run containerd (its TestMain
// dispatches on mainEnv) and returns it with a Config on a fresh data dir,
// whose layout it returns too.
func realContainerdConfig(t *testing.T, binDir, snapshotter string) (exe string, cfg Config, paths layout.Layout) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(mainEnv, "containerd") // inherited by the child

	// Socket paths are short-limited, so not under t.TempDir().
	run, err := os.MkdirTemp("/run", "skiff-ct-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	paths = layout.New(t.TempDir())
	l := paths.Agent
	return exe, Config{
		RootDir:        l.ContainerdDir,
		ConfigDir:      l.ContainerdConfigDir,
		CNIConfDir:     l.CNIConfDir,
		LogFile:        l.ContainerdLog,
		StateDir:       filepath.Join(run, "state"),
		Address:        filepath.Join(run, "c.sock"),
		BinDir:         binDir,
		SandboxImage:   "skiff/test-pause:1",
		RegistriesFile: filepath.Join(paths.DataDir, "registries.yaml"),
		Snapshotter:    snapshotter,
	}, paths
}

// TestRealContainerd runs containerd (this test binary acting as Main) with
// the generated config, imports an image, checks the CRI plugin lists it,
// and runs a pod through CRI, with the bundled runc and shim, across a
// restart of containerd. SKIFF_CONTAINERD_TEST_SNAPSHOTTER=native picks
// the snapshotter instead of the probe.
func TestRealContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: containerd mounts snapshots and runs a pod")
	}
	binDir, err := bundle.Extract(layout.New(t.TempDir()).HelpersDir)
	if err != nil {
		t.Fatalf("unpack the bundled runc and shim (scripts/build-helpers makes them): %v", err)
	}
	exe, cfg, paths := realContainerdConfig(t, binDir, os.Getenv("SKIFF_CONTAINERD_TEST_SNAPSHOTTER")) // "" probes
	cfg.Debug = true
	var proc *Process
	start := func() (context.CancelFunc, <-chan error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		t0 := time.Now()
		proc = &Process{Config: cfg, Command: []string{exe}}
		done, err := proc.Start(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Logf("containerd serving after %s", time.Since(t0).Round(time.Millisecond))
		return cancel, done
	}
	stopped := func(cancel context.CancelFunc, done <-chan error) {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stop: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("containerd did not stop")
		}
	}
	cancel, done := start()
	running := true
	t.Cleanup(func() {
		if running {
			stopped(cancel, done)
		}
		if t.Failed() {
			b, _ := os.ReadFile(cfg.LogFile)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("containerd.log (end):\n%s", b)
		}
	})
	ctx := context.Background()

	// The image: this test binary as an image that waits (mainEnv=pause),
	// with its shared libraries if it has any.
	files := []images.File{{Path: "/pause", Mode: 0o755, Source: exe}}
	files = append(files, sharedLibs(t, exe)...)
	var tarball bytes.Buffer
	if _, err := images.Write(&tarball, images.Spec{
		Name:       cfg.SandboxImage,
		Files:      files,
		Entrypoint: []string{"/pause"},
		Env:        []string{mainEnv + "=pause"},
	}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	names, err := ImportArchive(ctx, cfg.Address, bytes.NewReader(tarball.Bytes()), WithPinned())
	if err != nil {
		t.Fatal(err)
	}
	const name = "docker.io/skiff/test-pause:1"
	if !slices.Equal(names, []string{name}) {
		t.Fatalf("imported %v, want [%s]", names, name)
	}
	t.Logf("imported %s (%d MB) in %s", name, tarball.Len()>>20, time.Since(t0).Round(time.Millisecond))

	cl, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(Namespace))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	nsctx := namespaces.WithNamespace(ctx, Namespace)
	img, err := cl.GetImage(nsctx, name)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := cl.GetLabel(nsctx, "containerd.io/defaults/snapshotter")
	if ok, err := img.IsUnpacked(nsctx, snap); err != nil || !ok {
		t.Fatalf("image not unpacked for snapshotter %q: %v", snap, err)
	}
	if img.Labels()[PinnedLabel] != PinnedValue {
		t.Errorf("image labels %v, want pinned", img.Labels())
	}

	// Another image, zstd-compressed, dropped into a watched image dir
	// (which Watch creates).
	imgDir := paths.Agent.ImagesDir
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	watching := make(chan struct{})
	go func() {
		watchDone <- (&ImageDir{Dir: imgDir, Address: cfg.Address, watching: func() { close(watching) }}).Watch(watchCtx)
	}()
	defer func() {
		stopWatch()
		if err := <-watchDone; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	var zbuf bytes.Buffer
	if _, err := images.Write(&zbuf, images.Spec{Name: "skiff/test-data:2", Files: []images.File{{Path: "/data", Content: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watching:
	case <-time.After(30 * time.Second):
		t.Fatal("Watch did not start watching the image dir")
	}
	zf, err := os.Create(filepath.Join(imgDir, "data.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := zstd.NewWriter(zf)
	zw.Write(zbuf.Bytes())
	zw.Close()
	zf.Close()

	// The CRI plugin, as the kubelet sees it.
	conn, err := grpc.NewClient("unix://"+cfg.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	criImages := runtimeapi.NewImageServiceClient(conn)
	criRuntime := runtimeapi.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := criImages.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, im := range resp.Images {
			for _, tag := range im.RepoTags {
				found[tag] = im.Pinned
			}
		}
		pinned, ok1 := found[name]
		dataPinned, ok2 := found["docker.io/skiff/test-data:2"]
		if ok1 && ok2 {
			if !pinned || !dataPinned {
				t.Errorf("CRI reports pinned=%v for %s and %v for the image dir image, want both pinned", pinned, name, dataPinned)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRI lists %v, want %s and docker.io/skiff/test-data:2", found, name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	status, err := criImages.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
	if err != nil || status.Image == nil {
		t.Fatalf("CRI image status of %s: %v %v", name, status, err)
	}

	// A host-network pod (no CNI needed) whose sandbox and container both
	// run from the imported image, without any pull.
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "p", Uid: "u1", Namespace: "test", Attempt: 0},
		LogDirectory: filepath.Join(paths.DataDir, "pods"),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}
	pod, err := criRuntime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("run pod sandbox: %v", err)
	}
	defer func() {
		criRuntime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		criRuntime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	}()
	ctr, err := criRuntime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  pod.PodSandboxId,
		SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image:    &runtimeapi.ImageSpec{Image: name},
			LogPath:  "c.log",
		},
	})
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	if _, err := criRuntime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	containerRunning := func() {
		t.Helper()
		st, err := criRuntime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId})
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container state %v (%s)", st.Status.State, st.Status.Message)
		}
	}
	containerRunning()

	// stillRunning reconnects to a new containerd and finds the container
	// running there.
	stillRunning := func(when string) {
		t.Helper()
		conn.Connect()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := criRuntime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId})
			if err == nil {
				if st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Fatalf("%s: container state %v (%s)", when, st.Status.State, st.Status.Message)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", when, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Pods outlive containerd: restart it and find the container running.
	stopped(cancel, done)
	running = false
	cancel, done = start()
	running = true
	stillRunning("after restart")

	// A containerd killed under skiff is started again, and finds the
	// container still running; the component does not end.
	killed := proc.pid.Load()
	if err := syscall.Kill(int(killed), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("the component ended after containerd was killed: %v", err)
		default:
		}
		if pid := proc.pid.Load(); pid != killed && answers(ctx, cfg.Address) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("containerd was not started again after it was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	stillRunning("after containerd was killed")
	if _, err := criRuntime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr.ContainerId, Timeout: 5}); err != nil {
		t.Errorf("stop container: %v", err)
	}
}

// A containerd that keeps exiting ends the component with its last
// words, instead of being started again for ever.
func TestContainerdThatKeepsExitingEndsTheComponent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: containerd mounts snapshots")
	}
	restore := MaxRestarts
	MaxRestarts = 0
	defer func() { MaxRestarts = restore }()
	exe, cfg, _ := realContainerdConfig(t, t.TempDir(), "native")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &Process{Config: cfg, Command: []string{exe}}
	done, err := p.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(p.pid.Load()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "containerd exited unexpectedly (signal: killed)") || !strings.Contains(err.Error(), "skiff stops instead of starting it again") {
			t.Fatalf("component ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the component did not end")
	}
}

// sharedLibs returns the dynamic loader and libraries exe needs, so it can
// run in an otherwise empty image.
func sharedLibs(t *testing.T, exe string) []images.File {
	t.Helper()
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []images.File
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			out = append(out, images.File{Path: interp, Mode: 0o755, Source: resolve1(t, interp)})
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range libs {
		for _, dir := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib"} {
			p := filepath.Join(dir, lib)
			if _, err := os.Stat(p); err == nil {
				out = append(out, images.File{Path: p, Mode: 0o755, Source: resolve1(t, p)})
				break
			}
		}
	}
	return out
}

func resolve1(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
