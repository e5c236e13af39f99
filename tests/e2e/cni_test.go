package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/images"
	"github.com/skiff-io/skiff/pkg/layout"
)

// The CNI this test brings: upstream's bridge plugin under a name of its
// own, so that only the host's plugin dir can provide it, on its own
// bridge and subnet; host-local, portmap and loopback come from skiff's
// bundled plugins.
const (
	byoPlugin   = "skiff-test-bridge"
	byoConflist = "10-skiff-test.conflist"
	byoBridge   = "skiff-test0"
	byoSubnet   = "10.77.0.0/24"
	byoImage    = "skiff.test/cni-installer:v1"
)

// TestBringYourOwnCNI runs a node with --flannel-backend none and installs
// a CNI the way stock ones (Calico, Cilium) are installed: a DaemonSet on
// the host network drops a plugin into /opt/cni/bin and a conflist into
// /etc/cni/net.d. The node turns Ready on that config, and pods get their
// addresses from it.
func TestBringYourOwnCNI(t *testing.T) {
	if entries, _ := os.ReadDir(layout.HostCNIConfDir); len(entries) > 0 {
		t.Skipf("%s already holds a CNI config on this host; a node with --flannel-backend none would use it", layout.HostCNIConfDir)
	}
	// Registered before the node's own cleanup, so it runs after the node
	// has stopped: then nothing can use the plugin any more.
	t.Cleanup(removeTestCNI)
	plugin := buildCNIPlugin(t, "main/bridge")

	s := newNode(t, "--flannel-backend", "none")
	installer := filepath.Join(t.TempDir(), "cni-installer.tar")
	conflist := filepath.Join(filepath.Dir(installer), byoConflist)
	if err := os.WriteFile(conflist, []byte(testConflist), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := images.WriteFile(installer, images.Spec{
		Name: byoImage,
		Files: []images.File{
			{Path: webBinary, Mode: 0o755, Source: testImages(t).binary},
			{Path: "/cni/" + byoPlugin, Mode: 0o755, Source: plugin},
			{Path: "/cni/" + byoConflist, Mode: 0o644, Source: conflist},
		},
		Entrypoint: []string{webBinary},
	}); err != nil {
		t.Fatal(err)
	}
	copyFile(t, installer, filepath.Join(s.imagesDir(), filepath.Base(installer)))
	s.start()
	s.waitReady()

	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		})
	}

	if !run("without a CNI the node waits for one", func(t *testing.T) {
		eventually(t, 2*time.Minute, func() error {
			nodes, err := s.nodes()
			if err != nil {
				return err
			}
			if len(nodes) != 1 {
				return fmt.Errorf("%d nodes registered", len(nodes))
			}
			if ready := nodes[0].condition("Ready"); ready != "False" {
				return fmt.Errorf("node Ready is %q with no CNI installed, want False", ready)
			}
			return nil
		})
		if _, err := os.Stat(filepath.Join(s.paths().Agent.CNIConfDir, "10-flannel.conflist")); err == nil {
			t.Error("flannel's conflist was written with --flannel-backend none")
		}
	}) {
		t.FailNow()
	}

	if !run("a CNI installed into /opt/cni/bin and /etc/cni/net.d makes the node Ready", func(t *testing.T) {
		s.apply(cniInstallerManifest)
		s.waitNodeReady(3 * time.Minute)
		for _, path := range []string{filepath.Join(layout.HostCNIBinDir, byoPlugin), filepath.Join(layout.HostCNIConfDir, byoConflist)} {
			if _, err := os.Stat(path); err != nil {
				t.Errorf("the installer did not leave %s: %v", path, err)
			}
		}
	}) {
		t.FailNow()
	}

	run("pods get addresses from that CNI and answer on them", func(t *testing.T) {
		s.kubectl("run", "byo", "--image="+webImageV1, "--port=8080")
		pod := s.waitPod("default", "byo", 2*time.Minute, podInfo.running)
		_, subnet, _ := net.ParseCIDR(byoSubnet)
		if ip := net.ParseIP(pod.Status.PodIP); ip == nil || !subnet.Contains(ip) {
			t.Fatalf("pod byo has IP %q, want one in %s from the CNI brought", pod.Status.PodIP, byoSubnet)
		}
		eventually(t, time.Minute, func() error {
			body, _, err := hostGet(webURL(pod.Status.PodIP, webPort, "/byo"))
			if err != nil {
				return err
			}
			if !strings.HasPrefix(body, "hostname=byo ") {
				return fmt.Errorf("answer %q", body)
			}
			return nil
		})
	})
}

// testConflist chains the brought plugin with bundled ones: host-local for
// addresses and portmap, which containerd finds in skiff's own plugin dir.
const testConflist = `{
  "cniVersion": "1.0.0",
  "name": "skiff-test",
  "plugins": [
    {
      "type": "` + byoPlugin + `",
      "bridge": "` + byoBridge + `",
      "isGateway": true,
      "ipMasq": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "` + byoSubnet + `"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

// cniInstallerManifest installs the plugin, then the config, as CNI
// installers do: the config last, so that it never names a missing plugin.
const cniInstallerManifest = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: cni-installer
  namespace: kube-system
spec:
  selector:
    matchLabels: {app: cni-installer}
  template:
    metadata:
      labels: {app: cni-installer}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 1
      tolerations:
      - operator: Exists
      initContainers:
      - name: plugin
        image: ` + byoImage + `
        imagePullPolicy: Never
        args: [cp, /cni/` + byoPlugin + `, /host/bin/` + byoPlugin + `]
        volumeMounts: [{name: bin, mountPath: /host/bin}]
      - name: config
        image: ` + byoImage + `
        imagePullPolicy: Never
        args: [cp, /cni/` + byoConflist + `, /host/net.d/` + byoConflist + `]
        volumeMounts: [{name: netd, mountPath: /host/net.d}]
      containers:
      - name: wait
        image: ` + byoImage + `
        imagePullPolicy: Never
        args: [sleep, infinity]
      volumes:
      - name: bin
        hostPath: {path: ` + layout.HostCNIBinDir + `, type: DirectoryOrCreate}
      - name: netd
        hostPath: {path: ` + layout.HostCNIConfDir + `, type: DirectoryOrCreate}
`

// buildCNIPlugin builds one of the upstream CNI plugins at the version the
// bundled ones are built from, under the test's plugin name.
func buildCNIPlugin(t *testing.T, plugin string) string {
	t.Helper()
	script, err := os.ReadFile("../../scripts/build-helpers")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CNI_PLUGINS_VERSION=(\S+)$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("scripts/build-helpers names no CNI_PLUGINS_VERSION")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "-trimpath", "-ldflags=-s -w",
		"github.com/containernetworking/plugins/plugins/"+plugin+"@"+string(m[1]))
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the CNI plugin %s: %v\n%s", plugin, err, out)
	}
	built := filepath.Join(dir, filepath.Base(plugin))
	named := filepath.Join(dir, byoPlugin)
	if err := os.Rename(built, named); err != nil {
		t.Fatal(err)
	}
	return named
}

// removeTestCNI removes what the brought CNI left on the host: its files,
// its bridge and its address reservations. The node's cleanup removes
// /opt/cni and /etc/cni themselves when they did not exist before.
func removeTestCNI() {
	for _, path := range []string{
		filepath.Join(layout.HostCNIBinDir, byoPlugin),
		filepath.Join(layout.HostCNIConfDir, byoConflist),
		"/var/lib/cni/networks/skiff-test",
	} {
		os.RemoveAll(path)
	}
	if exec.Command("ip", "link", "show", byoBridge).Run() == nil {
		_ = exec.Command("ip", "link", "delete", byoBridge).Run()
	}
}
