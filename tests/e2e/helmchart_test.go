package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The chart the HelmChart tests install: one Deployment of the test image
// whose tag and MESSAGE environment variable come from the values.
const (
	helmTestNamespace = "helm-test"
	helmTestRelease   = "web"
)

var helmTestChart = map[string]string{
	"Chart.yaml": `apiVersion: v2
name: skiff-test-web
version: 0.1.0
`,
	"values.yaml": `version: v1
message: default
`,
	"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}
    spec:
      containers:
      - name: web
        image: skiff.test/web:{{ .Values.version }}
        imagePullPolicy: Never
        env:
        - name: MESSAGE
          value: {{ .Values.message | quote }}
        readinessProbe:
          httpGet:
            path: /
            port: 8080
`,
}

// chartArchive packs files as `helm package` does: a gzipped tar with
// every file under a folder named after the chart.
func chartArchive(t *testing.T, name string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for path, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name + "/" + path, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// helmChartManifest is a HelmChart in kube-system installing the test
// chart inline into helmTestNamespace with valuesContent.
func helmChartManifest(chartContent, valuesContent string) string {
	var values strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(valuesContent), "\n") {
		values.WriteString("    " + line + "\n")
	}
	return fmt.Sprintf(`apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: %s
  namespace: kube-system
spec:
  chartContent: %s
  targetNamespace: %s
  createNamespace: true
  valuesContent: |-
%s`, helmTestRelease, chartContent, helmTestNamespace, values.String())
}

// releaseSecrets lists the Helm release records of the test release, as
// `helm list` reads them: Secrets of type helm.sh/release.v1, one per
// revision, as "revision status" sorted by revision.
func (s *server) releaseSecrets() (string, error) {
	return s.kubectlErr("-n", helmTestNamespace, "get", "secrets",
		"-l", "owner=helm,name="+helmTestRelease, "--field-selector", "type=helm.sh/release.v1",
		"--sort-by", "{.metadata.labels.version}",
		"-o", `jsonpath={range .items[*]}{.metadata.labels.version} {.metadata.labels.status}{"\n"}{end}`)
}

// waitRelease waits until the release's latest revision is revision,
// deployed, and its Deployment is available with the test image of
// version and MESSAGE message.
func (s *server) waitRelease(revision int, version, message string) {
	s.t.Helper()
	eventually(s.t, 4*time.Minute, func() error {
		s.alive()
		records, err := s.releaseSecrets()
		if err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSpace(records), "\n")
		if last := lines[len(lines)-1]; last != fmt.Sprintf("%d deployed", revision) {
			return fmt.Errorf("release records %q, want the last to be revision %d deployed", records, revision)
		}
		out, err := s.kubectlErr("-n", helmTestNamespace, "get", "deployment", helmTestRelease, "-o",
			`jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[?(@.name=="MESSAGE")].value} {.status.updatedReplicas}/{.status.availableReplicas}/{.status.replicas}`)
		if err != nil {
			return err
		}
		want := fmt.Sprintf("skiff.test/web:%s %s 1/1/1", version, message)
		if out != want {
			return fmt.Errorf("deployment: %q, want %q", out, want)
		}
		return nil
	})
}

func TestHelmChart(t *testing.T) {
	s := newNode(t)
	s.start()
	s.waitReady()
	s.waitNodeReady(3 * time.Minute)
	dir := s.paths().Server.ManifestsDir
	content := base64.StdEncoding.EncodeToString(chartArchive(t, "skiff-test-web", helmTestChart))

	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		})
	}

	if !run("an inline chart in the manifests folder is installed by a job from a local image", func(t *testing.T) {
		s.writeManifest(dir, "web-chart.yaml", helmChartManifest(content, "message: first"))
		s.waitRelease(1, "v1", "first")
		images := s.kubectl("-n", "kube-system", "get", "jobs", "-l", "helmcharts.helm.cattle.io/chart="+helmTestRelease,
			"-o", "jsonpath={.items[*].spec.template.spec.containers[0].image}")
		if !strings.HasPrefix(images, "skiff.local/system/helm:") {
			t.Errorf("install job image %q, want skiff's own skiff.local/system/helm", images)
		}
		s.checkSystemImagesLocal(t)
		// helm-controller reruns the job until the release carries the
		// hash of the configuration the job applied.
		hash := s.kubectl("-n", "kube-system", "get", "job", "helm-install-"+helmTestRelease,
			"-o", `jsonpath={.spec.template.spec.containers[0].env[?(@.name=="CONFIG_HASH")].value}`)
		label := s.kubectl("-n", helmTestNamespace, "get", "secret", "sh.helm.release.v1."+helmTestRelease+".v1",
			"-o", `jsonpath={.metadata.labels.helmcharts\.helm\.cattle\.io/configHash}`)
		if hash == "" || label != hash {
			t.Errorf("release label configHash %q, want the job's CONFIG_HASH %q", label, hash)
		}
	}) {
		t.FailNow()
	}

	run("a stock helm lists the release with the admin kubeconfig", func(t *testing.T) {
		helm, err := exec.LookPath("helm")
		if err != nil {
			t.Skip("no helm on PATH; the release records above are what it reads")
		}
		out, err := exec.Command(helm, "list", "-A", "--kubeconfig", s.kubeconfig, "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("helm list -A: %v\n%s", err, out)
		}
		var releases []struct{ Name, Namespace, Revision, Status string }
		if err := json.Unmarshal(out, &releases); err != nil {
			t.Fatalf("helm list -A -o json: %v\n%s", err, out)
		}
		want := struct{ Name, Namespace, Revision, Status string }{helmTestRelease, helmTestNamespace, "1", "deployed"}
		if !slices.Contains(releases, want) {
			t.Errorf("helm list -A: %s, want %+v among them", out, want)
		}
	})

	run("editing valuesContent upgrades the release", func(t *testing.T) {
		s.writeManifest(dir, "web-chart.yaml", helmChartManifest(content, "message: second\nversion: v2"))
		s.waitRelease(2, "v2", "second")
	})

	run("a HelmChartConfig's values override the HelmChart's", func(t *testing.T) {
		s.apply(`apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata:
  name: web
  namespace: kube-system
spec:
  valuesContent: |-
    message: third
`)
		s.waitRelease(3, "v2", "third")
	})

	run("deleting the file uninstalls the release", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, "web-chart.yaml")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 4*time.Minute, func() error {
			s.alive()
			if out, err := s.kubectlErr("-n", "kube-system", "get", "helmcharts", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("HelmCharts left: %q (%v)", out, err)
			}
			if out, err := s.kubectlErr("-n", helmTestNamespace, "get", "deployments", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("deployments left: %q (%v)", out, err)
			}
			if records, err := s.releaseSecrets(); err != nil || strings.TrimSpace(records) != "" {
				return fmt.Errorf("release records left: %q (%v)", records, err)
			}
			return nil
		})
	})
}

func TestHelmControllerDisabled(t *testing.T) {
	s := newServer(t, "--disable-helm-controller")
	s.start()
	s.waitReady()
	// The server's other controllers have run by the time the bundled
	// addons are applied; the HelmChart one starts beside them.
	s.waitAddonState("coredns", "Applied", 2*time.Minute)
	time.Sleep(5 * time.Second)
	if out, err := s.kubectlErr("get", "crd", "-o", "name"); err != nil {
		t.Fatal(err)
	} else if strings.Contains(out, "helm.cattle.io") {
		t.Errorf("the HelmChart APIs are installed although the controller is disabled:\n%s", out)
	}
	// The component runner logs "NAME is running" for each component it
	// starts.
	if strings.Contains(s.log(), "helm-controller is running") {
		t.Errorf("the HelmChart controller runs although it is disabled:\n%s", grepLines(s.log(), "helm-controller"))
	}
}
