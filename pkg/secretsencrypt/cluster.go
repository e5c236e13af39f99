package secretsencrypt

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// configInfoMetric is the apiserver's gauge whose hash label is the hash of
// the encryption config file content it has loaded, at start and after each
// automatic reload (k8s.io/apiserver/pkg/server/options/encryptionconfig/metrics).
// The apiserver checks the file for changes once a minute.
const configInfoMetric = "apiserver_encryption_config_controller_last_config_info"

// fieldManager names skiff in the managed fields of the Secrets it rewrites.
const fieldManager = "skiff-secrets-encrypt"

var secretsResource = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// Cluster is the running apiserver, reached with an admin kubeconfig.
type Cluster struct {
	Kubeconfig string
	// PollInterval is how often WaitLoaded asks; default 2 s.
	PollInterval time.Duration
}

func (c *Cluster) restConfig() (*rest.Config, error) {
	rc, err := kubeclient.Config(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%w; run this on the server, as root, with its --data-dir", err)
	}
	// Rewriting thousands of Secrets at client-go's default 5 per second
	// would take many minutes; the apiserver's priority and fairness still
	// guards it.
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = fieldManager
	return rc, nil
}

// LoadedHashes returns the hashes of the encryption config files the
// apiserver reports as loaded: none when it runs without one.
func (c *Cluster) LoadedHashes(ctx context.Context) ([]string, error) {
	rc, err := c.restConfig()
	if err != nil {
		return nil, err
	}
	client, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(rc.Host, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the apiserver's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the apiserver's metrics: %s", resp.Status)
	}
	return parseConfigInfo(resp.Body)
}

// parseConfigInfo finds the hash labels of configInfoMetric in Prometheus
// text exposition.
func parseConfigInfo(r io.Reader) ([]string, error) {
	var hashes []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		labels, ok := strings.CutPrefix(sc.Text(), configInfoMetric+"{")
		if !ok {
			continue
		}
		end := strings.LastIndexByte(labels, '}')
		if end < 0 {
			continue
		}
		for _, pair := range strings.Split(labels[:end], ",") {
			name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && name == "hash" {
				if h := strings.Trim(value, `"`); h != "" && !slices.Contains(hashes, h) {
					hashes = append(hashes, h)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the apiserver's metrics: %w", err)
	}
	return hashes, nil
}

// Loaded says in a few words whether the apiserver has loaded the config
// whose content hashes to hash: "yes", "no (...)" or "unknown (...)".
func (c *Cluster) Loaded(ctx context.Context, hash string) string {
	hashes, err := c.LoadedHashes(ctx)
	return describeLoaded(hash, hashes, err)
}

func describeLoaded(hash string, hashes []string, err error) string {
	switch {
	case err != nil:
		return "unknown (" + err.Error() + ")"
	case slices.Contains(hashes, hash):
		return "yes"
	case len(hashes) == 0:
		return "no (the apiserver runs without an encryption config; restart skiff server)"
	default:
		return "no (it has " + strings.Join(hashes, ", ") + "; it checks the file once a minute)"
	}
}

// WaitLoaded waits until the apiserver has loaded the config whose content
// hashes to hash, for at most timeout.
func (c *Cluster) WaitLoaded(ctx context.Context, path, hash string, timeout time.Duration) error {
	interval := c.PollInterval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		reqCtx, reqCancel := context.WithTimeout(ctx, 10*time.Second)
		hashes, err := c.LoadedHashes(reqCtx)
		reqCancel()
		if err == nil && slices.Contains(hashes, hash) {
			return nil
		}
		last = describeLoaded(hash, hashes, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("the apiserver did not load %s within %s: loaded: %s; check that skiff server runs with this --data-dir and look for encryption config errors in its log", path, timeout, last)
		case <-time.After(interval):
		}
	}
}

// RewriteSecrets updates every Secret in every namespace unchanged, which
// makes the apiserver store it again with the current write key (it skips
// no-op updates only for values already stored under that key). Conflicts
// are retried with a fresh get; Secrets deleted meanwhile are skipped.
func (c *Cluster) RewriteSecrets(ctx context.Context) (secrets, namespaces int, err error) {
	rc, err := c.restConfig()
	if err != nil {
		return 0, 0, err
	}
	client, err := kubeclient.NewDynamic(rc)
	if err != nil {
		return 0, 0, err
	}
	res := client.Resource(secretsResource)
	done := map[types.UID]bool{}
	nss := map[string]bool{}
	var failed []string
	var firstErr error
	cont := ""
	for {
		list, err := res.List(ctx, metav1.ListOptions{Limit: 500, Continue: cont})
		if apierrors.IsResourceExpired(err) && cont != "" {
			cont = "" // the continue token outlived a compaction: list again, skipping what is done
			continue
		}
		if err != nil {
			return len(done), len(nss), fmt.Errorf("list Secrets: %w", err)
		}
		for i := range list.Items {
			item := &list.Items[i]
			if done[item.GetUID()] {
				continue
			}
			if err := rewrite(ctx, res, item); err != nil {
				if ctx.Err() != nil {
					return len(done), len(nss), ctx.Err()
				}
				failed = append(failed, item.GetNamespace()+"/"+item.GetName())
				if firstErr == nil {
					firstErr = err
				}
			}
			done[item.GetUID()] = true
			nss[item.GetNamespace()] = true
		}
		if cont = list.GetContinue(); cont == "" {
			break
		}
	}
	if len(failed) > 0 {
		return len(done), len(nss), fmt.Errorf("could not rewrite %d of %d Secrets (%s: %v)", len(failed), len(done), failed[0], firstErr)
	}
	return len(done), len(nss), nil
}

func rewrite(ctx context.Context, res dynamic.NamespaceableResourceInterface, obj *unstructured.Unstructured) error {
	ns, name := obj.GetNamespace(), obj.GetName()
	fresh := false
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		if fresh {
			got, err := res.Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			obj = got
		}
		fresh = true
		_, err := res.Namespace(ns).Update(ctx, obj, metav1.UpdateOptions{FieldManager: fieldManager})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// Reencrypt runs `skiff secrets-encrypt reencrypt`: it waits (for at most
// timeout) until the apiserver has loaded the current config, rewrites
// every Secret so it is stored under the write key, then removes every
// other key. It prints one line per stage to out.
func Reencrypt(ctx context.Context, f Files, c *Cluster, timeout time.Duration, out io.Writer) error {
	unlock, err := f.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := f.CheckReencrypt()
	if err != nil {
		return err
	}
	if _, err := c.restConfig(); err != nil {
		return err
	}
	fmt.Fprintf(out, "stage %s, write key %s: waiting for the apiserver to load %s (up to %s)\n", st.Stage, st.WriteKey(), st.Path, timeout)
	if err := c.WaitLoaded(ctx, st.Path, st.Hash, timeout); err != nil {
		return err
	}
	fmt.Fprintf(out, "apiserver loaded the config; rewriting every Secret under key %s\n", st.WriteKey())
	n, nss, err := c.RewriteSecrets(ctx)
	if err != nil {
		return fmt.Errorf("%w; every key is kept: fix the cause and run %q again", err, Command+" reencrypt")
	}
	fmt.Fprintf(out, "rewrote %d Secrets in %d namespaces\n", n, nss)
	fin, err := f.Finish(st.Hash)
	if err != nil {
		return err
	}
	removed := "no other key to remove"
	if old := st.KeyNames()[1:]; len(old) > 0 {
		removed = "removed key " + strings.Join(old, ", ")
	}
	fmt.Fprintf(out, "stage %s: %s; %s is the only key (the apiserver reloads the file within a minute)\n", fin.Stage, removed, fin.WriteKey())
	return nil
}
