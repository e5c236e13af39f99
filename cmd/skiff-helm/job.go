package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The places helm-controller's job spec mounts its inputs at (upstream's
// pkg/controllers/chart, function job and the set* helpers beside it).
type mounts struct {
	// Values holds the chart's and its HelmChartConfig's values files,
	// named values-<source>-<index>-<kind>.yaml so that their names sort
	// in the order they are applied, and the repo's CA as ca-file.pem.
	Values string
	// Chart holds <NAME>.tgz.base64, the HelmChart's spec.chartContent.
	Chart string
	// Auth holds spec.authSecret's keys: a basic-auth Secret's username
	// and password.
	Auth string
	// CAFiles holds spec.repoCAConfigMap's keys, each a PEM bundle.
	CAFiles string
	// Home is the job's writable home (emptyDirs for .helm, .cache and
	// .config, and spec.dockerRegistrySecret at .docker/config.json).
	Home string
	// Temp is the job's writable /tmp.
	Temp string
}

var jobMounts = mounts{
	Values:  "/config",
	Chart:   "/chart",
	Auth:    "/auth",
	CAFiles: "/ca-files",
	Home:    "/home/klipper-helm",
	Temp:    "/tmp",
}

// configHashLabel is the release label helm-controller reads back
// (chart.KeyConfigHash): a deployed release whose label matches the
// job's CONFIG_HASH is up to date, and the controller stops re-running
// the job.
const configHashLabel = "helmcharts.helm.cattle.io/configHash"

// The failure policies of a HelmChart (spec.failurePolicy).
const (
	failureReinstall = "reinstall"
	failureAbort     = "abort"
)

// job is one run of the install or delete job, as helm-controller
// describes it in the container's arguments, environment and mounts.
type job struct {
	Delete bool
	// Release is the release's name, the HelmChart's.
	Release   string
	Namespace string
	// Driver is Helm's storage driver (HELM_DRIVER): secret or configmap.
	Driver string

	// Chart is a chart reference: a name in Repo, a URL or an oci://
	// reference. ChartArchive, when set, is the decoded
	// spec.chartContent, which wins over the reference.
	Chart        string
	ChartArchive []byte
	Repo         string
	Version      string

	CreateNamespace bool
	TakeOwnership   bool
	ValueFiles      []string
	Set             []string
	SetString       []string
	Timeout         time.Duration
	FailurePolicy   string

	// ConfigHash and ExpectedRevision are what the controller knew when
	// it made the job: the hash to label the release with, and the
	// revision it saw (0: none).
	ConfigHash       string
	ExpectedRevision int

	Username, Password    string
	PassCredentials       bool
	InsecureSkipTLSVerify bool
	PlainHTTP             bool
	// CAFile is a PEM bundle of the repo's CAs, "" for the system roots.
	CAFile string
}

// parseJob reads a job from its arguments (install or delete, with the
// flags helm-controller adds), its environment and its mounts. A CA
// bundle assembled from several files is written under m.Temp.
func parseJob(args []string, getenv func(string) string, m mounts) (*job, error) {
	if len(args) == 0 {
		return nil, errors.New("no action given: the job's first argument must be install or delete")
	}
	j := &job{
		Release:       getenv("NAME"),
		Namespace:     getenv("TARGET_NAMESPACE"),
		Driver:        getenv("HELM_DRIVER"),
		Repo:          getenv("REPO"),
		Version:       getenv("VERSION"),
		FailurePolicy: failureReinstall,
		ConfigHash:    getenv("CONFIG_HASH"),
	}
	if j.Release == "" {
		return nil, errors.New("NAME is not set: the job must name the release")
	}
	if j.Namespace == "" {
		j.Namespace = getenv("CHART_NAMESPACE")
	}
	if j.Namespace == "" {
		j.Namespace = "default"
	}
	if j.Driver == "" {
		j.Driver = "secret"
	}
	switch args[0] {
	case "install":
	case "delete":
		j.Delete = true
	default:
		return nil, fmt.Errorf("unknown action %q: the job's first argument must be install or delete", args[0])
	}
	if err := j.parseFlags(args[1:]); err != nil {
		return nil, err
	}
	// The uninstall waits as long as an install would.
	if t := getenv("TIMEOUT"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return nil, fmt.Errorf("TIMEOUT %q: %w", t, err)
		}
		j.Timeout = d
	}
	if j.Delete {
		return j, nil
	}

	if p := getenv("FAILURE_POLICY"); p != "" {
		if p != failureReinstall && p != failureAbort {
			return nil, fmt.Errorf("FAILURE_POLICY %q is neither %s nor %s", p, failureReinstall, failureAbort)
		}
		j.FailurePolicy = p
	}
	if r := getenv("EXPECTED_RELEASE_REVISION"); r != "" {
		n, err := strconv.Atoi(r)
		if err != nil {
			return nil, fmt.Errorf("EXPECTED_RELEASE_REVISION %q: %w", r, err)
		}
		j.ExpectedRevision = n
	}
	var err error
	for name, to := range map[string]*bool{
		"AUTH_PASS_CREDENTIALS":    &j.PassCredentials,
		"INSECURE_SKIP_TLS_VERIFY": &j.InsecureSkipTLSVerify,
		"PLAIN_HTTP":               &j.PlainHTTP,
	} {
		if v := getenv(name); v != "" {
			if *to, err = strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("%s %q: %w", name, v, err)
			}
		}
	}

	// The controller writes the chart in the %{KUBERNETES_API}% form when
	// it is served by the cluster itself (k3s's convention for charts in
	// the server's static folder).
	api := getenv("KUBERNETES_SERVICE_HOST") + ":" + getenv("KUBERNETES_SERVICE_PORT")
	j.Chart = strings.ReplaceAll(getenv("CHART"), "%{KUBERNETES_API}%", api)
	if j.Repo != "" {
		// The controller names a repo's chart <NAME>/<chart>, the form
		// `helm repo add NAME REPO` makes; the SDK takes the repo's URL
		// and the bare chart name.
		j.Chart = strings.TrimPrefix(j.Chart, j.Release+"/")
	}
	if j.ChartArchive, err = readChartContent(m.Chart, j.Release); err != nil {
		return nil, err
	}
	if j.ChartArchive == nil && j.Chart == "" {
		return nil, fmt.Errorf("HelmChart %s gives no chart: set spec.chart (with spec.repo for a chart repository) or spec.chartContent", j.Release)
	}
	if j.ValueFiles, err = valueFiles(m.Values); err != nil {
		return nil, err
	}
	if j.Username, j.Password, err = basicAuth(m.Auth); err != nil {
		return nil, err
	}
	if j.CAFile, err = caBundle(m); err != nil {
		return nil, err
	}
	return j, nil
}

// parseFlags reads the flags helm-controller puts after the action
// (upstream's args function).
func (j *job) parseFlags(args []string) error {
	for i := 0; i < len(args); i++ {
		flag := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag %s needs a value", flag)
			}
			i++
			return args[i], nil
		}
		var err error
		switch flag {
		case "--namespace":
			j.Namespace, err = value()
		case "--version":
			j.Version, err = value()
		case "--create-namespace":
			j.CreateNamespace = true
		case "--take-ownership":
			j.TakeOwnership = true
		case "--set":
			var v string
			v, err = value()
			j.Set = append(j.Set, v)
		case "--set-string":
			var v string
			v, err = value()
			j.SetString = append(j.SetString, v)
		default:
			return fmt.Errorf("unknown argument %q", flag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readChartContent decodes <dir>/<release>.tgz.base64, or returns nil
// when the HelmChart has no spec.chartContent.
func readChartContent(dir, release string) ([]byte, error) {
	path := filepath.Join(dir, release+".tgz.base64")
	encoded, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the chart content: %w", err)
	}
	if len(strings.TrimSpace(string(encoded))) == 0 {
		return nil, nil
	}
	archive, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(encoded)), ""))
	if err != nil {
		return nil, fmt.Errorf("spec.chartContent of HelmChart %s is not base64 (%v); encode the chart's .tgz with base64 -w0", release, err)
	}
	return archive, nil
}

// valueFiles lists the values files in dir in the order they apply: the
// HelmChart's before its HelmChartConfig's, as their names sort.
func valueFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the values folder: %w", err)
	}
	var files []string
	for _, e := range entries {
		// The projected volume's own entries (..data and the timestamped
		// folder it points to) start with dots.
		if strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		files = append(files, filepath.Join(dir, e.Name()))
	}
	slices.Sort(files)
	return files, nil
}

// basicAuth reads the username and password of spec.authSecret, if the
// HelmChart has one.
func basicAuth(dir string) (username, password string, err error) {
	read := func(key string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("read the repo credentials: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if username, err = read("username"); err != nil {
		return "", "", err
	}
	if password, err = read("password"); err != nil {
		return "", "", err
	}
	return username, password, nil
}

// caBundle gathers the repo CAs of spec.repoCA and spec.repoCAConfigMap
// into one file, the form the SDK takes; "" when there are none.
func caBundle(m mounts) (string, error) {
	var sources []string
	if _, err := os.Stat(filepath.Join(m.Values, "ca-file.pem")); err == nil {
		sources = append(sources, filepath.Join(m.Values, "ca-file.pem"))
	}
	entries, err := os.ReadDir(m.CAFiles)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read the repo CA folder: %w", err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") && !e.IsDir() {
			sources = append(sources, filepath.Join(m.CAFiles, e.Name()))
		}
	}
	switch len(sources) {
	case 0:
		return "", nil
	case 1:
		return sources[0], nil
	}
	var bundle []byte
	for _, s := range sources {
		b, err := os.ReadFile(s)
		if err != nil {
			return "", fmt.Errorf("read the repo CA: %w", err)
		}
		bundle = append(append(bundle, b...), '\n')
	}
	path := filepath.Join(m.Temp, "repo-ca.pem")
	if err := os.WriteFile(path, bundle, 0o644); err != nil {
		return "", fmt.Errorf("write the repo CA bundle: %w", err)
	}
	return path, nil
}
