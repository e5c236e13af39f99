// Package helmchart runs upstream's HelmChart controller
// (github.com/k3s-io/helm-controller) in the server, as k3s does: it
// installs the HelmChart and HelmChartConfig APIs (helm.cattle.io, so k3s
// manifests work unchanged) and turns each HelmChart into a Job that
// installs, upgrades or uninstalls its release. The Jobs run skiff's helm
// client (cmd/skiff-helm) from a system image every node imports, so no
// image is ever pulled.
package helmchart

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/k3s-io/helm-controller/pkg/controllers/chart"
	helmcrds "github.com/k3s-io/helm-controller/pkg/crds"
	helmfactory "github.com/k3s-io/helm-controller/pkg/generated/controllers/helm.cattle.io"
	"github.com/rancher/lasso/pkg/controller"
	"github.com/rancher/wrangler/v3/pkg/apply"
	"github.com/rancher/wrangler/v3/pkg/generated/controllers/batch"
	"github.com/rancher/wrangler/v3/pkg/generated/controllers/core"
	"github.com/rancher/wrangler/v3/pkg/generated/controllers/rbac"
	"github.com/rancher/wrangler/v3/pkg/generic"
	"github.com/rancher/wrangler/v3/pkg/schemes"
	"github.com/rancher/wrangler/v3/pkg/start"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// ControllerName is the controller's name in its events and in the
// helmcharts.cattle.io/managed-by annotation it claims HelmCharts with:
// upstream's default, so a HelmChart written for k3s is claimed here too.
const ControllerName = "helm-controller"

// jobClusterRole is what each chart's job service account is bound to,
// as in k3s: a chart may install anything, CRDs and cluster roles too.
const jobClusterRole = "cluster-admin"

// workers is how many HelmCharts (and Jobs, Secrets...) are handled at
// once; upstream's default of 50 is sized for Rancher's fleets, and a
// chart's job takes seconds anyway.
const workers = 5

// Controller is the server component running the HelmChart controller.
type Controller struct {
	// Kubeconfig is the credential the controller acts with. It binds
	// every chart's job service account to cluster-admin, which the
	// apiserver grants only to a holder of cluster-admin's permissions
	// (or of "bind" on it, the same power): so it is the admin's.
	Kubeconfig string
	// JobImage runs the install and delete jobs (agent.SystemImages'
	// HelmJob), unless a HelmChart names its own spec.jobImage.
	JobImage string
	// APIServerPort is where a bootstrap chart's job (spec.bootstrap,
	// host network on a server) reaches the apiserver on 127.0.0.1.
	APIServerPort int
	// NodeName is the events' source host.
	NodeName string
}

func (c *Controller) Name() string { return "helm-controller" }

// Start returns at once; in the background it installs the CRDs and then
// runs the controller until ctx is cancelled. Failing to install the CRDs
// ends the component with that error.
func (c *Controller) Start(ctx context.Context) (<-chan error, error) {
	rc, err := kubeclient.Config(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		if err := c.run(ctx, rc); err != nil && ctx.Err() == nil {
			done <- err
		}
	}()
	return done, nil
}

func (c *Controller) run(ctx context.Context, rc *rest.Config) error {
	rc = rest.CopyConfig(rc)
	// Installing a chart touches a handful of objects; the apiserver is
	// local and the defaults' 5 per second would slow start-up down.
	rc.QPS, rc.Burst = 50, 100
	if err := installCRDs(ctx, rc); err != nil {
		return err
	}

	k8s, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("helm-controller client: %w", err)
	}
	applier, err := apply.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("helm-controller apply: %w", err)
	}
	applier = applier.WithSetOwnerReference(false, false).WithContext(ctx)

	// One shared cache and work queue for all the controller's types, as
	// upstream's own main builds them.
	scf, err := controller.NewSharedControllerFactoryFromConfigWithOptions(rc, schemes.All, &controller.SharedControllerFactoryOptions{
		DefaultRateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 60*time.Second),
		DefaultWorkers:     workers,
	})
	if err != nil {
		return fmt.Errorf("helm-controller caches: %w", err)
	}
	opts := &generic.FactoryOptions{SharedControllerFactory: scf}
	coreF, err := core.NewFactoryFromConfigWithOptions(rc, opts)
	if err != nil {
		return fmt.Errorf("helm-controller core controllers: %w", err)
	}
	batchF, err := batch.NewFactoryFromConfigWithOptions(rc, opts)
	if err != nil {
		return fmt.Errorf("helm-controller batch controllers: %w", err)
	}
	rbacF, err := rbac.NewFactoryFromConfigWithOptions(rc, opts)
	if err != nil {
		return fmt.Errorf("helm-controller rbac controllers: %w", err)
	}
	helmF, err := helmfactory.NewFactoryFromConfigWithOptions(rc, opts)
	if err != nil {
		return fmt.Errorf("helm-controller HelmChart controllers: %w", err)
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	// Events go to the namespace of the HelmChart they are about.
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k8s.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(schemes.All, corev1.EventSource{Component: ControllerName, Host: c.NodeName})

	// Upstream takes the job image from a package variable, which its
	// Register reads.
	chart.DefaultJobImage = c.JobImage
	chart.Register(ctx,
		metav1.NamespaceAll,
		ControllerName,
		jobClusterRole,
		strconv.Itoa(c.APIServerPort),
		applier,
		recorder,
		batchF.Batch().V1(),
		coreF.Core().V1(),
		helmF.Helm().V1(),
		rbacF.Rbac().V1(),
	)
	if err := start.All(ctx, workers, coreF, batchF, rbacF, helmF); err != nil {
		return fmt.Errorf("start helm-controller: %w", err)
	}
	<-ctx.Done()
	return nil
}

// installCRDs creates or updates the HelmChart and HelmChartConfig CRDs
// from upstream's definitions and waits until the apiserver serves them.
func installCRDs(ctx context.Context, rc *rest.Config) error {
	crds, err := helmcrds.List()
	if err != nil {
		return fmt.Errorf("read helm-controller's CRDs: %w", err)
	}
	applier, err := apply.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("apply client: %w", err)
	}
	objs := make([]runtime.Object, len(crds))
	for i, crd := range crds {
		objs[i] = crd
	}
	if err := applier.WithContext(ctx).WithSetID("skiff-helm-controller-crds").WithDynamicLookup().ApplyObjects(objs...); err != nil {
		return fmt.Errorf("install the HelmChart CRDs: %w", err)
	}
	client, err := apiextclient.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("CRD client: %w", err)
	}
	for _, crd := range crds {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("wait for the CRD %s to be established: %w", crd.Name, err)
		}
	}
	return nil
}
