// Command skiff-ingress is Skiff's ingress controller. It runs as a
// DaemonSet, serves the cluster's Ingresses of its class on the node's HTTP
// and HTTPS ports and publishes the nodes it runs on as their addresses.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/pkg/ingress"
	"github.com/skiff-io/skiff/pkg/kubeclient"
	"github.com/skiff-io/skiff/pkg/startpages"
)

type options struct {
	httpPort, httpsPort, healthPort int
	ingressClass                    string
	kubeconfig                      string
	podSelector                     string
	logLevel                        string
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
	flags := pflag.NewFlagSet("skiff-ingress", pflag.ContinueOnError)
	flags.IntVar(&opts.httpPort, "http-port", 80, "port to serve plain HTTP on")
	flags.IntVar(&opts.httpsPort, "https-port", 443, "port to serve HTTPS on")
	flags.IntVar(&opts.healthPort, "health-port", 10254, "port to serve /healthz on")
	flags.StringVar(&opts.ingressClass, "ingress-class", "skiff", "IngressClass whose Ingresses to serve")
	flags.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server with; in-cluster configuration when empty")
	flags.StringVar(&opts.podSelector, "pod-selector", "app.kubernetes.io/name=skiff-ingress", "label selector of this controller's pods in $POD_NAMESPACE, whose nodes become the Ingress addresses")
	flags.StringVar(&opts.logLevel, "log-level", "info", "log level: debug, info, warn or error")
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
	selector, err := labels.Parse(opts.podSelector)
	if err != nil {
		return fmt.Errorf("parse --pod-selector: %w", err)
	}

	config, err := kubeclient.ConfigOrInCluster(opts.kubeconfig)
	if err != nil {
		return err
	}
	config.UserAgent = "skiff-ingress"
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return fmt.Errorf("create kubernetes client: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	events := record.NewBroadcaster(record.WithContext(ctx))
	defer events.Shutdown()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "skiff-ingress", Host: os.Getenv("NODE_NAME")})

	namespace := os.Getenv("POD_NAMESPACE")
	if namespace == "" {
		logrus.Warn("POD_NAMESPACE is not set: Ingress status will not be updated")
	}
	controller, err := ingress.NewController(client, ingress.Options{
		IngressClass: opts.ingressClass,
		PodNamespace: namespace,
		PodSelector:  selector,
		Recorder:     recorder,
	})
	if err != nil {
		return fmt.Errorf("create ingress controller: %w", err)
	}

	servers := ingress.Servers{
		Proxy:        controller.Proxy(),
		TLSConfig:    controller.TLSConfig(),
		Healthz:      controller.Healthz(),
		DrainTimeout: 20 * time.Second,
	}
	for _, l := range []struct {
		name     string
		port     int
		listener *net.Listener
	}{
		{"http", opts.httpPort, &servers.HTTP},
		{"https", opts.httpsPort, &servers.HTTPS},
		{"health", opts.healthPort, &servers.Health},
	} {
		listener, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(l.port)))
		if err != nil {
			return fmt.Errorf("listen on %s port: %w", l.name, err)
		}
		*l.listener = listener
	}

	// Whichever of the two stops first takes the other one down with it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	controllerDone := make(chan error, 1)
	go func() {
		defer cancel()
		controllerDone <- controller.Run(ctx)
	}()
	logrus.Infof("serving HTTP on :%d, HTTPS on :%d, health on :%d", opts.httpPort, opts.httpsPort, opts.healthPort)
	serveErr := servers.Run(ctx)
	cancel()
	if err := <-controllerDone; err != nil {
		return fmt.Errorf("run ingress controller: %w", err)
	}
	if serveErr != nil {
		return serveErr
	}
	logrus.Info("shut down cleanly")
	return nil
}
