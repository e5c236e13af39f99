// Command skiff-helm is the program of the HelmChart controller's jobs:
// helm-controller runs it, in a system image made from skiff, with the
// arguments, environment and mounts it gives upstream's klipper-helm
// image, and it installs, upgrades or uninstalls the HelmChart's release
// with the Helm SDK. It is its own Go module so that Helm's dependencies
// never move the versions the embedded Kubernetes was released with.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	// The image has no system CA roots; a chart repository on the
	// internet is verified against Mozilla's, built in.
	_ "golang.org/x/crypto/x509roots/fallback"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/storage/driver"
)

// maxHistory is how many revisions of a release an upgrade keeps, the
// helm command's default.
const maxHistory = 10

func main() {
	log.SetFlags(0)
	j, err := parseJob(os.Args[1:], os.Getenv, jobMounts)
	if err != nil {
		log.Fatal(err)
	}
	// Helm keeps its caches and settings under HOME, and client-go its
	// discovery cache under KUBECACHEDIR: the job's root file system is
	// read-only, and its home folders are the writable mounts.
	for k, v := range map[string]string{
		"HOME":         jobMounts.Home,
		"KUBECACHEDIR": filepath.Join(jobMounts.Home, ".cache", "kube"),
		"TMPDIR":       jobMounts.Temp,
	} {
		if err := os.Setenv(k, v); err != nil {
			log.Fatal(err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, j); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, j *job) error {
	settings := cli.New()
	settings.SetNamespace(j.Namespace)
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), j.Namespace, j.Driver, log.Printf); err != nil {
		return fmt.Errorf("set up Helm for namespace %s: %w", j.Namespace, err)
	}
	last, err := lastRelease(cfg, j.Release)
	if err != nil {
		return err
	}
	if j.Delete {
		if last == nil {
			log.Printf("release %s is not installed in %s; nothing to uninstall", j.Release, j.Namespace)
			return nil
		}
		return uninstall(cfg, j)
	}

	if last != nil && last.Info.Status == release.StatusDeployed && j.ConfigHash != "" && last.Labels[configHashLabel] == j.ConfigHash {
		// A job pod run again after it succeeded (the node restarted, say).
		log.Printf("release %s revision %d is deployed with this configuration; nothing to do", j.Release, last.Version)
		return nil
	}
	if last != nil && j.ExpectedRevision != 0 && last.Version != j.ExpectedRevision {
		log.Printf("release %s is at revision %d, not the %d the controller saw; applying this job's configuration over it", j.Release, last.Version, j.ExpectedRevision)
	}
	replace := false
	if last != nil {
		switch last.Info.Status {
		case release.StatusDeployed:
		case release.StatusUninstalled:
			// Uninstalled with its history kept: installed again under
			// the same name.
			replace = true
		default:
			if j.FailurePolicy == failureAbort {
				return fmt.Errorf("release %s is %s and the HelmChart's failurePolicy is abort; repair it with helm rollback or helm uninstall, or set failurePolicy: reinstall", j.Release, last.Info.Status)
			}
			log.Printf("release %s is %s; uninstalling it to install it again (failurePolicy: reinstall)", j.Release, last.Info.Status)
			if err := uninstall(cfg, j); err != nil {
				return err
			}
			last = nil
		}
	}

	if cfg.RegistryClient, err = registryClient(settings, j); err != nil {
		return err
	}
	pathOptions := action.ChartPathOptions{
		RepoURL:               j.Repo,
		Version:               j.Version,
		Username:              j.Username,
		Password:              j.Password,
		PassCredentialsAll:    j.PassCredentials,
		CaFile:                j.CAFile,
		InsecureSkipTLSverify: j.InsecureSkipTLSVerify,
		PlainHTTP:             j.PlainHTTP,
	}
	vals, err := (&values.Options{ValueFiles: j.ValueFiles, Values: j.Set, StringValues: j.SetString}).MergeValues(getter.All(settings))
	if err != nil {
		return fmt.Errorf("read the values of HelmChart %s: %w", j.Release, err)
	}
	labels := map[string]string{}
	if j.ConfigHash != "" {
		labels[configHashLabel] = j.ConfigHash
	}

	var rel *release.Release
	if last == nil || replace {
		install := action.NewInstall(cfg)
		install.ChartPathOptions = pathOptions
		install.SetRegistryClient(cfg.RegistryClient)
		install.ReleaseName = j.Release
		install.Namespace = j.Namespace
		install.CreateNamespace = j.CreateNamespace
		install.TakeOwnership = j.TakeOwnership
		install.Replace = replace
		install.Timeout = j.Timeout
		install.Labels = labels
		ch, err := loadChart(j, &install.ChartPathOptions, settings)
		if err != nil {
			return err
		}
		if rel, err = install.RunWithContext(ctx, ch, vals); err != nil {
			return fmt.Errorf("install release %s in %s: %w", j.Release, j.Namespace, err)
		}
	} else {
		upgrade := action.NewUpgrade(cfg)
		upgrade.ChartPathOptions = pathOptions
		upgrade.SetRegistryClient(cfg.RegistryClient)
		upgrade.Namespace = j.Namespace
		upgrade.TakeOwnership = j.TakeOwnership
		upgrade.Timeout = j.Timeout
		upgrade.Labels = labels
		upgrade.MaxHistory = maxHistory
		ch, err := loadChart(j, &upgrade.ChartPathOptions, settings)
		if err != nil {
			return err
		}
		if rel, err = upgrade.RunWithContext(ctx, j.Release, ch, vals); err != nil {
			return fmt.Errorf("upgrade release %s in %s: %w", j.Release, j.Namespace, err)
		}
	}
	log.Printf("release %s in %s: revision %d %s (chart %s-%s)", rel.Name, rel.Namespace, rel.Version, rel.Info.Status, rel.Chart.Metadata.Name, rel.Chart.Metadata.Version)
	return nil
}

// lastRelease is the release's latest revision, nil when it has none.
func lastRelease(cfg *action.Configuration, name string) (*release.Release, error) {
	history, err := cfg.Releases.History(name)
	if errors.Is(err, driver.ErrReleaseNotFound) || (err == nil && len(history) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the history of release %s: %w", name, err)
	}
	releaseutil.SortByRevision(history)
	return history[len(history)-1], nil
}

func uninstall(cfg *action.Configuration, j *job) error {
	u := action.NewUninstall(cfg)
	u.Timeout = j.Timeout
	res, err := u.Run(j.Release)
	if err != nil {
		return fmt.Errorf("uninstall release %s from %s: %w", j.Release, j.Namespace, err)
	}
	if res != nil && res.Info != "" {
		log.Print(res.Info)
	}
	log.Printf("uninstalled release %s from %s", j.Release, j.Namespace)
	return nil
}

// loadChart loads the inline chart, or fetches the referenced one.
func loadChart(j *job, opts *action.ChartPathOptions, settings *cli.EnvSettings) (*chart.Chart, error) {
	if j.ChartArchive != nil {
		ch, err := loader.LoadArchive(bytes.NewReader(j.ChartArchive))
		if err != nil {
			return nil, fmt.Errorf("spec.chartContent of HelmChart %s is not a chart archive (%v); give the base64 of a chart's .tgz (helm package)", j.Release, err)
		}
		return ch, nil
	}
	path, err := opts.LocateChart(j.Chart, settings)
	if err != nil {
		return nil, fmt.Errorf("fetch chart %s: %w", j.Chart, err)
	}
	ch, err := loader.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", j.Chart, err)
	}
	return ch, nil
}

// registryClient serves oci:// charts, with the credentials of
// spec.dockerRegistrySecret (HOME/.docker/config.json) when given.
func registryClient(settings *cli.EnvSettings, j *job) (*registry.Client, error) {
	var (
		c   *registry.Client
		err error
	)
	if j.CAFile != "" || j.InsecureSkipTLSVerify {
		c, err = registry.NewRegistryClientWithTLS(os.Stderr, "", "", j.CAFile, j.InsecureSkipTLSVerify, settings.RegistryConfig, false)
	} else {
		opts := []registry.ClientOption{
			registry.ClientOptWriter(os.Stderr),
			registry.ClientOptCredentialsFile(settings.RegistryConfig),
		}
		if j.PlainHTTP {
			opts = append(opts, registry.ClientOptPlainHTTP())
		}
		c, err = registry.NewClient(opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("set up the OCI registry client: %w", err)
	}
	return c, nil
}
