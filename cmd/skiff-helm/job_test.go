package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testMounts makes the job's mount points as temporary folders.
func testMounts(t *testing.T) mounts {
	t.Helper()
	root := t.TempDir()
	m := mounts{
		Values:  filepath.Join(root, "config"),
		Chart:   filepath.Join(root, "chart"),
		Auth:    filepath.Join(root, "auth"),
		CAFiles: filepath.Join(root, "ca-files"),
		Home:    filepath.Join(root, "home"),
		Temp:    filepath.Join(root, "tmp"),
	}
	for _, d := range []string{m.Values, m.Chart, m.Temp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestParseInstallJob(t *testing.T) {
	m := testMounts(t)
	archive := []byte("not really a tgz, decoded only")
	writeFile(t, filepath.Join(m.Chart, "web.tgz.base64"), base64.StdEncoding.EncodeToString(archive)+"\n")
	// Written out of order; the projected volume's own entries are skipped.
	writeFile(t, filepath.Join(m.Values, "values-1-000-HelmChartConfig-ValuesContent.yaml"), "a: 2\n")
	writeFile(t, filepath.Join(m.Values, "values-0-000-HelmChart-ValuesContent.yaml"), "a: 1\n")
	writeFile(t, filepath.Join(m.Values, "..data", "values-0-000-HelmChart-ValuesContent.yaml"), "a: 1\n")
	writeFile(t, filepath.Join(m.Values, "ca-file.pem"), "CA\n")

	j, err := parseJob(
		[]string{"install", "--namespace", "apps", "--create-namespace", "--version", "1.2.3", "--set", "replicas=2", "--set-string", `name=a\,b`},
		env(map[string]string{
			"NAME": "web", "CHART_NAMESPACE": "kube-system", "TARGET_NAMESPACE": "apps", "HELM_DRIVER": "secret",
			"TIMEOUT": "5m0s", "FAILURE_POLICY": "abort", "CONFIG_HASH": "SHA256=AB", "EXPECTED_RELEASE_REVISION": "3",
			"PLAIN_HTTP": "true", "AUTH_PASS_CREDENTIALS": "false",
		}),
		m)
	if err != nil {
		t.Fatal(err)
	}
	want := &job{
		Release:          "web",
		Namespace:        "apps",
		Driver:           "secret",
		ChartArchive:     archive,
		Version:          "1.2.3",
		CreateNamespace:  true,
		ValueFiles:       []string{filepath.Join(m.Values, "values-0-000-HelmChart-ValuesContent.yaml"), filepath.Join(m.Values, "values-1-000-HelmChartConfig-ValuesContent.yaml")},
		Set:              []string{"replicas=2"},
		SetString:        []string{`name=a\,b`},
		Timeout:          5 * time.Minute,
		FailurePolicy:    failureAbort,
		ConfigHash:       "SHA256=AB",
		ExpectedRevision: 3,
		PlainHTTP:        true,
		CAFile:           filepath.Join(m.Values, "ca-file.pem"),
	}
	if !reflect.DeepEqual(j, want) {
		t.Fatalf("job =\n%+v\nwant\n%+v", j, want)
	}
}

func TestParseRepoChart(t *testing.T) {
	m := testMounts(t)
	writeFile(t, filepath.Join(m.Auth, "username"), "user\n")
	writeFile(t, filepath.Join(m.Auth, "password"), "pass")
	writeFile(t, filepath.Join(m.CAFiles, "one.pem"), "ONE")
	writeFile(t, filepath.Join(m.CAFiles, "two.pem"), "TWO")
	j, err := parseJob([]string{"install"}, env(map[string]string{
		"NAME": "traefik", "CHART_NAMESPACE": "kube-system", "CHART": "traefik/traefik", "REPO": "https://charts.example",
	}), m)
	if err != nil {
		t.Fatal(err)
	}
	// The controller names the chart <NAME>/<chart>; the SDK wants the bare name.
	if j.Chart != "traefik" || j.Repo != "https://charts.example" || j.ChartArchive != nil {
		t.Errorf("chart = %q repo %q archive %v", j.Chart, j.Repo, j.ChartArchive != nil)
	}
	if j.Namespace != "kube-system" || j.Driver != "secret" || j.FailurePolicy != failureReinstall {
		t.Errorf("defaults: namespace %q driver %q policy %q", j.Namespace, j.Driver, j.FailurePolicy)
	}
	if j.Username != "user" || j.Password != "pass" {
		t.Errorf("credentials %q %q", j.Username, j.Password)
	}
	bundle, err := os.ReadFile(j.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(bundle) != "ONE\nTWO\n" {
		t.Errorf("CA bundle %q", bundle)
	}
}

func TestParseChartURLWithClusterAPI(t *testing.T) {
	m := testMounts(t)
	j, err := parseJob([]string{"install"}, env(map[string]string{
		"NAME": "x", "CHART": "https://%{KUBERNETES_API}%/static/charts/x.tgz",
		"KUBERNETES_SERVICE_HOST": "10.43.0.1", "KUBERNETES_SERVICE_PORT": "443",
	}), m)
	if err != nil {
		t.Fatal(err)
	}
	if j.Chart != "https://10.43.0.1:443/static/charts/x.tgz" {
		t.Errorf("chart = %q", j.Chart)
	}
}

func TestParseDeleteJob(t *testing.T) {
	m := testMounts(t)
	// The delete job has no values or chart mounts.
	m.Values, m.Chart = filepath.Join(m.Temp, "absent"), filepath.Join(m.Temp, "absent")
	j, err := parseJob([]string{"delete"}, env(map[string]string{"NAME": "web", "TARGET_NAMESPACE": "apps", "HELM_DRIVER": "configmap", "TIMEOUT": "1m30s"}), m)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Delete || j.Release != "web" || j.Namespace != "apps" || j.Driver != "configmap" || j.Timeout != 90*time.Second {
		t.Errorf("job = %+v", j)
	}
}

func TestParseJobErrors(t *testing.T) {
	m := testMounts(t)
	writeFile(t, filepath.Join(m.Chart, "bad.tgz.base64"), "%%% not base64")
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no action", nil, map[string]string{"NAME": "a"}, "first argument"},
		{"unknown action", []string{"upgrade"}, map[string]string{"NAME": "a"}, "unknown action"},
		{"no name", []string{"install"}, map[string]string{"CHART": "x"}, "NAME is not set"},
		{"unknown flag", []string{"install", "--wait"}, map[string]string{"NAME": "a", "CHART": "x"}, `unknown argument "--wait"`},
		{"flag without value", []string{"install", "--version"}, map[string]string{"NAME": "a", "CHART": "x"}, "needs a value"},
		{"no chart", []string{"install"}, map[string]string{"NAME": "a"}, "gives no chart"},
		{"bad content", []string{"install"}, map[string]string{"NAME": "bad"}, "is not base64"},
		{"bad timeout", []string{"install"}, map[string]string{"NAME": "a", "CHART": "x", "TIMEOUT": "soon"}, "TIMEOUT"},
		{"bad policy", []string{"install"}, map[string]string{"NAME": "a", "CHART": "x", "FAILURE_POLICY": "retry"}, "FAILURE_POLICY"},
		{"bad bool", []string{"install"}, map[string]string{"NAME": "a", "CHART": "x", "PLAIN_HTTP": "maybe"}, "PLAIN_HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseJob(tc.args, env(tc.env), m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
