// Package kubeclient builds skiff's own clients of the cluster from a
// kubeconfig file, in one way, so that every component gets the same
// loading, error wording and rate limits; and watches informers the same
// way for every controller.
package kubeclient

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config loads a REST config from a kubeconfig file.
func Config(kubeconfig string) (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return rc, nil
}

// ConfigOrInCluster loads kubeconfig or, when it is "", the in-cluster
// configuration of the pod it runs in: how skiff's addon programs reach
// the API.
func ConfigOrInCluster(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return Config(kubeconfig)
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("load in-cluster configuration (use --kubeconfig outside a cluster): %w", err)
	}
	return rc, nil
}

// New returns a typed client from a kubeconfig file.
func New(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := Config(kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("client from %s: %w", kubeconfig, err)
	}
	return client, nil
}

// NewDynamic returns a dynamic client from a REST config.
func NewDynamic(rc *rest.Config) (dynamic.Interface, error) {
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("dynamic client for %s: %w", rc.Host, err)
	}
	return client, nil
}

// Lazy returns a function that builds the client on first use and then
// returns the same one, so that handlers registered before the apiserver
// serves (or before the kubeconfig exists) can still hold one.
func Lazy(kubeconfig string) func() (kubernetes.Interface, error) {
	return sync.OnceValues(func() (kubernetes.Interface, error) { return New(kubeconfig) })
}

// OnChange calls changed on every add, update and delete the informer sees,
// and logs its watch errors, the routine ones (a closed or expired watch,
// which the reflector relists) at debug level only.
func OnChange(resource string, informer cache.SharedIndexInformer, changed func()) error {
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		UpdateFunc: func(_, _ any) { changed() },
		DeleteFunc: func(any) { changed() },
	}); err != nil {
		return fmt.Errorf("watch %s: %w", resource, err)
	}
	if err := informer.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			logrus.Debugf("watch %s: %v", resource, err)
			return
		}
		logrus.Errorf("watch %s: %v", resource, err)
	}); err != nil {
		return fmt.Errorf("watch %s: %w", resource, err)
	}
	return nil
}
