package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/pkg/images"
)

// TestImportedImageAfterPull: an image pulled from a registry under one
// name and later imported from a tarball under another (the same image ID)
// runs under the imported name with imagePullPolicy Never, and with
// IfNotPresent while the registry is down. The kubelet keeps a pull record
// per image ID that names only the pulled name; skiff's kubelet
// configuration must not let that record hide the imported name. A
// KubeletConfiguration drop-in that asks for the kubelet's own default
// policy back gets it.
func TestImportedImageAfterPull(t *testing.T) {
	const (
		pulledRepo    = "pulled/web"
		pulledTag     = "a"
		pulledImage   = "skiff.test/" + pulledRepo + ":" + pulledTag
		importedImage = "skiff.test/imported/web:b"
	)
	// One image under two names: the name is only in the archive's index,
	// so both archives hold the same config and so the same image ID.
	spec := func(name string) images.Spec {
		return images.Spec{
			Name:       name,
			Files:      []images.File{{Path: webBinary, Mode: 0o755, Source: testImages(t).binary}},
			Entrypoint: []string{webBinary},
			Cmd:        []string{"serve"},
			Env:        []string{"WEB_VERSION=pulled-then-imported"},
		}
	}
	pulledTar := filepath.Join(t.TempDir(), "pulled.tar")
	if _, err := images.WriteFile(pulledTar, spec(pulledImage)); err != nil {
		t.Fatal(err)
	}
	var importedTar []byte
	{
		path := filepath.Join(t.TempDir(), "imported.tar")
		if _, err := images.WriteFile(path, spec(importedImage)); err != nil {
			t.Fatal(err)
		}
		var err error
		if importedTar, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	reg := newTestRegistry(t, pulledRepo, pulledTag, pulledTar)

	registries := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(registries, []byte("mirrors:\n  skiff.test:\n    endpoint: [\"http://"+reg.addr+"\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newNode(t, "--registries", registries)
	s.start()
	s.waitReady()
	s.waitNodeReady(3 * time.Minute)

	run := func(name string, f func(t *testing.T)) {
		if !t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		}) {
			t.FailNow()
		}
	}
	pod := func(name, image, policy string) string {
		return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: web, image: ` + image + `, imagePullPolicy: ` + policy + `}
`
	}

	run("a pod pulls the image from the registry", func(t *testing.T) {
		s.apply(pod("pulled", pulledImage, "IfNotPresent"))
		s.waitPod("default", "pulled", 3*time.Minute, podInfo.running)
		if !contains(reg.requests(), "GET /v2/"+pulledRepo+"/manifests/"+reg.manifest.digest) {
			t.Fatalf("the pod runs but the registry served no manifest; it saw:\n%s", strings.Join(reg.requests(), "\n"))
		}
	})

	run("the same image imported under another name is one image on the node", func(t *testing.T) {
		s.dropFile("imported.tar", importedTar)
		eventually(t, 2*time.Minute, func() error {
			nodes, err := s.nodes()
			if err != nil {
				return err
			}
			for _, n := range nodes {
				for _, img := range n.Status.Images {
					if contains(img.Names, pulledImage) && contains(img.Names, importedImage) {
						return nil
					}
				}
			}
			return fmt.Errorf("no image in the node status has both names %s and %s", pulledImage, importedImage)
		})
	})

	run("the imported name runs with imagePullPolicy Never", func(t *testing.T) {
		s.apply(pod("imported-never", importedImage, "Never"))
		s.waitPod("default", "imported-never", 2*time.Minute, podInfo.running)
	})

	run("the imported name runs with IfNotPresent while the registry is down", func(t *testing.T) {
		reg.close()
		s.apply(pod("imported-ifnotpresent", importedImage, "IfNotPresent"))
		s.waitPod("default", "imported-ifnotpresent", 2*time.Minute, podInfo.running)
	})

	run("a drop-in restores the kubelet's own credential verification policy", func(t *testing.T) {
		s.stop()
		if err := os.MkdirAll(s.paths().Agent.KubeletDropInDir, 0o755); err != nil {
			t.Fatal(err)
		}
		dropIn := filepath.Join(s.paths().Agent.KubeletDropInDir, "50-verify-preloaded.conf")
		if err := os.WriteFile(dropIn, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nimagePullCredentialsVerificationPolicy: NeverVerifyPreloadedImages\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s.start()
		s.waitReady()
		s.waitNodeReady(3 * time.Minute)
		// With the upstream default the pull record of the pulled name
		// hides the imported one: the failure this test guards against.
		s.apply(pod("imported-verified", importedImage, "Never"))
		s.waitPod("default", "imported-verified", 2*time.Minute, func(p podInfo) error {
			if !strings.Contains(p.waitingReasons(), "ErrImageNeverPull") {
				return fmt.Errorf("pod imported-verified is %s%s, want it waiting with ErrImageNeverPull", p.Status.Phase, p.waitingReasons())
			}
			return nil
		})
	})
}
