// Command skiff-servicelb is Skiff's ServiceLB controller. It runs as one
// pod, gives every LoadBalancer Service the addresses of the nodes that
// serve it and leaves the forwarding to kube-proxy.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/pkg/kubeclient"
	"github.com/skiff-io/skiff/pkg/servicelb"
	"github.com/skiff-io/skiff/pkg/startpages"
)

const component = "skiff-servicelb"

type options struct {
	kubeconfig    string
	reservedPorts []string
	healthPort    int
	logLevel      string
	leaderElect   bool
}

func main() {
	startpages.ReleaseLater()
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err == nil {
		err = run(opts)
	}
	if err != nil {
		logrus.Fatal(err)
	}
}

func parseFlags(args []string) (options, error) {
	var opts options
	flags := pflag.NewFlagSet(component, pflag.ContinueOnError)
	flags.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server with; in-cluster configuration when empty")
	// A string array, not a slice: reasons may contain commas.
	flags.StringArrayVar(&opts.reservedPorts, "reserved-port", nil, `port no Service may have, as PORT/PROTO=reason (e.g. "6443/TCP=the Skiff API server"); repeatable`)
	flags.IntVar(&opts.healthPort, "health-port", 9680, "port to serve /healthz on")
	flags.StringVar(&opts.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	flags.BoolVar(&opts.leaderElect, "leader-elect", true, "take the Lease "+component+" in $POD_NAMESPACE before acting, so that only one replica writes")
	if err := flags.Parse(args); err != nil {
		return opts, err
	}
	return opts, nil
}

func run(opts options) error {
	level, err := logrus.ParseLevel(opts.logLevel)
	if err != nil {
		return fmt.Errorf("parse --log-level: %w", err)
	}
	logrus.SetLevel(level)
	var reserved []servicelb.ReservedPort
	for _, value := range opts.reservedPorts {
		r, err := servicelb.ParseReservedPort(value)
		if err != nil {
			return fmt.Errorf("parse --reserved-port %w", err)
		}
		reserved = append(reserved, r)
	}

	config, err := kubeclient.ConfigOrInCluster(opts.kubeconfig)
	if err != nil {
		return err
	}
	config.UserAgent = component
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return fmt.Errorf("create kubernetes client: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	events := record.NewBroadcaster(record.WithContext(ctx))
	defer events.Shutdown()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})

	controller, err := servicelb.NewController(client, servicelb.Options{Reserved: reserved, Recorder: recorder})
	if err != nil {
		return fmt.Errorf("create servicelb controller: %w", err)
	}

	listener, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(opts.healthPort)))
	if err != nil {
		return fmt.Errorf("listen on health port: %w", err)
	}
	var leading atomic.Bool
	health := newHealthServer(controller, opts.leaderElect, &leading)
	healthDone := make(chan error, 1)
	go func() { healthDone <- health.Serve(listener) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = health.Shutdown(shutdownCtx)
	}()
	logrus.Infof("serving health on :%d", opts.healthPort)

	// A failing health listener takes the controller down with it, so that
	// the kubelet restarts the pod rather than probe a process that cannot
	// answer.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runDone := make(chan error, 1)
	go func() {
		if opts.leaderElect {
			runDone <- runElected(ctx, client, recorder, controller, &leading)
			return
		}
		leading.Store(true)
		if err := controller.Run(ctx); err != nil {
			runDone <- fmt.Errorf("run servicelb controller: %w", err)
			return
		}
		runDone <- nil
	}()
	select {
	case err = <-runDone:
	case err = <-healthDone:
		// Serve returns nothing but errors before Shutdown.
		err = fmt.Errorf("serve health: %w", err)
		cancel()
		<-runDone
	}
	if err != nil {
		return err
	}
	logrus.Info("shut down cleanly")
	return nil
}

// runElected runs the controller only while holding the Lease. Losing it
// is an error, so that the pod restarts and waits for the Lease afresh
// instead of carrying on next to the new leader.
func runElected(ctx context.Context, client kubernetes.Interface, recorder record.EventRecorder, controller *servicelb.Controller, leading *atomic.Bool) error {
	namespace := os.Getenv("POD_NAMESPACE")
	if namespace == "" {
		namespace = "kube-system"
	}
	identity := os.Getenv("POD_NAME")
	if identity == "" {
		hostname, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("find a leader election identity (set POD_NAME): %w", err)
		}
		identity = hostname
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, component,
		client.CoreV1(), client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: identity, EventRecorder: recorder})
	if err != nil {
		return fmt.Errorf("create lease lock: %w", err)
	}
	// A controller that fails on its own ends the election too: holding the
	// Lease while doing nothing would keep a healthy replica from taking over.
	electionCtx, stopElection := context.WithCancel(ctx)
	defer stopElection()
	controllerDone := make(chan error, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          lock,
		Name:          component,
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
		// Handing the Lease back on SIGTERM lets the next pod of a rollout
		// take over at once instead of a lease duration later.
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				logrus.Infof("leading as %s with lease %s/%s", identity, namespace, component)
				leading.Store(true)
				controllerDone <- controller.Run(ctx)
				stopElection()
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(leader string) {
				if leader != identity {
					logrus.Infof("%s leads; waiting for lease %s/%s", leader, namespace, component)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("set up leader election: %w", err)
	}
	logrus.Infof("waiting for lease %s/%s as %s", namespace, component, identity)
	elector.Run(electionCtx)
	// The controller's context ends with the election, so it stops promptly.
	if leading.Load() {
		if err := <-controllerDone; err != nil {
			return fmt.Errorf("run servicelb controller: %w", err)
		}
	}
	if ctx.Err() == nil {
		return fmt.Errorf("lost lease %s/%s: exiting so that this pod restarts and waits for it", namespace, component)
	}
	return nil
}

// newHealthServer answers /healthz with 200 while waiting for the Lease, so
// that a standby replica counts as ready and a rollout can proceed, and,
// once leading, as soon as the controller's caches have synced.
func newHealthServer(controller *servicelb.Controller, leaderElect bool, leading *atomic.Bool) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if leaderElect && !leading.Load() {
			_, _ = io.WriteString(w, "ok: waiting for the lease\n")
			return
		}
		controller.Healthz().ServeHTTP(w, r)
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logrus.StandardLogger().WriterLevel(logrus.DebugLevel), "", 0),
	}
}
