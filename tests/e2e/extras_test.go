package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStorageLoadBalancerAndMetrics checks the addons charts expect, on a
// fresh server with no image pulled: local-path volumes that keep their
// data across pods and restarts, LoadBalancer Services on the node's
// address, resource metrics for kubectl top and an autoscaler, and that
// --disable removes each.
func TestStorageLoadBalancerAndMetrics(t *testing.T) {
	s := newNode(t)
	s.start()
	s.waitReady()
	node := s.waitNodeReady(3 * time.Minute)
	nodeIP, nodeName := node.internalIP(), node.Metadata.Name

	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			f(t)
		})
	}

	if !run("the addons are applied and run from local images; ServiceLB's manifest of earlier versions is gone", func(t *testing.T) {
		for _, name := range []string{"local-storage", "metrics-server"} {
			s.waitAddonState(name, "Applied", 2*time.Minute)
		}
		for _, app := range []string{"local-path-provisioner", "metrics-server"} {
			s.waitSystemPodsReady("app.kubernetes.io/name="+app, 1, 3*time.Minute)
		}
		// ServiceLB's manifest as an earlier version left it, applied: it
		// and its objects go at the next start, now that the controller
		// runs in the server.
		manifestsDir := s.paths().Server.ManifestsDir
		s.writeManifest(manifestsDir, "servicelb.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: skiff-servicelb\n  namespace: kube-system\n")
		s.waitAddonState("servicelb", "Applied", time.Minute)
		s.stop()
		s.start()
		s.waitReady()
		eventually(t, time.Minute, func() error {
			if _, err := os.Stat(filepath.Join(manifestsDir, "servicelb.yaml")); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("servicelb.yaml is still in the manifests folder (%v)", err)
			}
			for _, obj := range [][]string{{"-n", "kube-system", "addon", "servicelb"}, {"-n", "kube-system", "serviceaccount", "skiff-servicelb"}} {
				if _, err := s.kubectlErr(append([]string{"get"}, obj...)...); err == nil {
					return fmt.Errorf("%v of the old ServiceLB manifest still exists", obj)
				}
			}
			return nil
		})
		s.checkSystemImagesLocal(t)
		if def := s.kubectl("get", "storageclass", "local-path", "-o", "jsonpath={.metadata.annotations.storageclass\\.kubernetes\\.io/is-default-class} {.volumeBindingMode} {.reclaimPolicy}"); def != "true WaitForFirstConsumer Delete" {
			t.Errorf("StorageClass local-path: default, binding mode, reclaim policy = %q", def)
		}
	}) {
		t.FailNow()
	}

	storage := s.paths().StorageDir
	run("a claim on the default class keeps its data across pods and restarts, and its directory goes with it", func(t *testing.T) {
		s.apply(claimManifest("data") + "---\n" + volumePodManifest("writer", "data", nodeName, "write", "/data/hello.txt", "hello from skiff"))
		s.waitPod("default", "writer", 3*time.Minute, podInfo.running)
		if phase := s.kubectl("get", "pvc", "data", "-o", "jsonpath={.status.phase} {.spec.storageClassName}"); phase != "Bound local-path" {
			t.Fatalf("claim data: phase and class %q, want Bound local-path", phase)
		}
		pv := strings.TrimSpace(s.kubectl("get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"))
		dir := strings.TrimSpace(s.kubectl("get", "pv", pv, "-o", "jsonpath={.spec.hostPath.path}"))
		if filepath.Dir(dir) != storage {
			t.Fatalf("volume %s is at %q, want a directory in %s", pv, dir, storage)
		}
		if affinity := s.kubectl("get", "pv", pv, "-o", "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"); affinity != nodeName {
			t.Errorf("volume %s is tied to node %q, want %s", pv, affinity, nodeName)
		}
		eventually(t, 30*time.Second, func() error {
			b, err := os.ReadFile(filepath.Join(dir, "hello.txt"))
			if err != nil || string(b) != "hello from skiff" {
				return fmt.Errorf("the volume's file on the node holds %q (%v)", b, err)
			}
			return nil
		})

		readBack := func(t *testing.T, pod string) {
			t.Helper()
			eventually(t, time.Minute, func() error {
				out, err := s.kubectlErr("exec", pod, "--", webBinary, "cat", "/data/hello.txt")
				if err != nil {
					return err
				}
				if out != "hello from skiff" {
					return fmt.Errorf("pod %s reads %q from the volume", pod, out)
				}
				return nil
			})
		}
		s.kubectl("delete", "pod", "writer", "--wait=true")
		s.apply(volumePodManifest("reader", "data", nodeName, "sleep", "infinity"))
		s.waitPod("default", "reader", 2*time.Minute, podInfo.running)
		readBack(t, "reader")

		s.stop()
		s.start()
		s.waitReady()
		s.waitNodeReady(3 * time.Minute)
		s.waitPod("default", "reader", 2*time.Minute, podInfo.running)
		readBack(t, "reader")

		s.kubectl("delete", "pod", "reader", "--wait=true")
		s.kubectl("delete", "pvc", "data", "--wait=true")
		eventually(t, 2*time.Minute, func() error {
			if _, err := s.kubectlErr("get", "pv", pv); err == nil {
				return fmt.Errorf("volume %s is still there after its claim was deleted", pv)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				return fmt.Errorf("the volume's directory %s is still there (%v)", dir, err)
			}
			return nil
		})
	})

	run("a LoadBalancer Service answers on the node's address; a conflicting or reserved port stays pending with an Event", func(t *testing.T) {
		s.kubectl("create", "deployment", "lb-web", "--image="+webImageV1, "--port=8080")
		s.waitPodsRunning("app=lb-web", 1)
		s.apply(loadBalancerManifest("lb-first", "app: lb-web", 8091) + "---\n" + loadBalancerManifest("lb-second", "app: lb-web", 8091) + "---\n" + loadBalancerManifest("lb-http", "app: lb-web", 80))
		eventually(t, time.Minute, func() error {
			if ips := s.kubectl("get", "service", "lb-first", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"); ips != nodeIP {
				return fmt.Errorf("service lb-first has load-balancer addresses %q, want %s", ips, nodeIP)
			}
			return nil
		})
		eventually(t, time.Minute, func() error {
			body, _, err := hostGet(webURL(nodeIP, 8091, "/via-load-balancer"))
			if err != nil {
				return err
			}
			if !strings.HasPrefix(body, "hostname=lb-web-") {
				return fmt.Errorf("answer %q", body)
			}
			return nil
		})
		s.waitServiceEvent("lb-second", "PortConflict", "default/lb-first")
		s.waitServiceEvent("lb-http", "PortReserved", "ingress")
		for _, pending := range []string{"lb-second", "lb-http"} {
			if ips := s.kubectl("get", "service", pending, "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"); ips != "" {
				t.Errorf("service %s has addresses %q, want none (pending)", pending, ips)
			}
		}
		// The port is free again once its holder goes.
		s.kubectl("delete", "service", "lb-first")
		eventually(t, time.Minute, func() error {
			if ips := s.kubectl("get", "service", "lb-second", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"); ips != nodeIP {
				return fmt.Errorf("service lb-second has addresses %q after lb-first went, want %s", ips, nodeIP)
			}
			return nil
		})
	})

	run("kubectl top shows nodes and pods", func(t *testing.T) {
		number := regexp.MustCompile(`\s\d+m\s+\d+%?\s+\d+Mi`)
		eventually(t, 3*time.Minute, func() error {
			out, err := s.kubectlErr("top", "node")
			if err != nil {
				return err
			}
			if !strings.Contains(out, nodeName) || !number.MatchString(out) {
				return fmt.Errorf("kubectl top node:\n%s", out)
			}
			return nil
		})
		eventually(t, 2*time.Minute, func() error {
			out, err := s.kubectlErr("top", "pod", "-n", "kube-system", "-l", "k8s-app=kube-dns")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "coredns-") || !regexp.MustCompile(`\s\d+m\s+\d+Mi`).MatchString(out) {
				return fmt.Errorf("kubectl top pod:\n%s", out)
			}
			return nil
		})
	})

	run("an autoscaler on CPU scales a busy deployment up and back down", func(t *testing.T) {
		s.apply(burnManifest)
		replicas := func() int {
			n, _ := strconv.Atoi(strings.TrimSpace(s.kubectl("get", "deployment", "burn", "-o", "jsonpath={.spec.replicas}")))
			return n
		}
		eventually(t, 5*time.Minute, func() error {
			if n := replicas(); n < 2 {
				return fmt.Errorf("deployment burn has %d replicas under load; hpa: %s", n, s.kubectl("get", "hpa", "burn", "--no-headers"))
			}
			return nil
		})
		eventually(t, 8*time.Minute, func() error {
			if n := replicas(); n != 1 {
				return fmt.Errorf("deployment burn has %d replicas after the load stopped; hpa: %s", n, s.kubectl("get", "hpa", "burn", "--no-headers"))
			}
			return nil
		})
	})

	run("--disable local-storage,servicelb,metrics-server removes them; dropping the flag brings them back", func(t *testing.T) {
		args := slices.Clone(s.args)
		s.stop()
		s.args = append(s.args, "--disable", "local-storage,servicelb,metrics-server")
		s.start()
		s.waitReady()
		eventually(t, 2*time.Minute, func() error {
			for _, obj := range [][]string{
				{"storageclass", "local-path"},
				{"apiservice", "v1beta1.metrics.k8s.io"},
				{"-n", "kube-system", "deployment", "local-path-provisioner"},
				{"-n", "kube-system", "deployment", "metrics-server"},
			} {
				if _, err := s.kubectlErr(append([]string{"get"}, obj...)...); err == nil {
					return fmt.Errorf("%v still exists with --disable", obj)
				}
			}
			return nil
		})
		// No controller gives a new LoadBalancer Service an address; the
		// same controller's 200 ms debounce would have within seconds.
		s.apply(loadBalancerManifest("lb-unserved", "app: lb-web", 8093))
		time.Sleep(10 * time.Second)
		if ips := s.kubectl("get", "service", "lb-unserved", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"); ips != "" {
			t.Errorf("service lb-unserved got addresses %q with --disable servicelb", ips)
		}
		s.stop()
		s.args = args
		s.start()
		s.waitReady()
		for _, name := range []string{"local-storage", "metrics-server"} {
			s.waitAddonState(name, "Applied", 2*time.Minute)
		}
		for _, app := range []string{"local-path-provisioner", "metrics-server"} {
			s.waitSystemPodsReady("app.kubernetes.io/name="+app, 1, 3*time.Minute)
		}
		eventually(t, time.Minute, func() error {
			if ips := s.kubectl("get", "service", "lb-unserved", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"); ips != nodeIP {
				return fmt.Errorf("service lb-unserved has addresses %q once ServiceLB runs again, want %s", ips, nodeIP)
			}
			return nil
		})
	})
}

// waitServiceEvent waits for a Warning Event on a Service with reason and a
// message naming what.
func (s *server) waitServiceEvent(service, reason, what string) {
	s.t.Helper()
	eventually(s.t, time.Minute, func() error {
		out := s.kubectl("get", "events", "--field-selector", "involvedObject.kind=Service,involvedObject.name="+service,
			"-o", "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}")
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "Warning "+reason+" ") && strings.Contains(line, what) {
				return nil
			}
		}
		return fmt.Errorf("events of service %s: %q, want a Warning %s naming %s", service, out, reason, what)
	})
}

// claimManifest is a claim on the default storage class.
func claimManifest(name string) string {
	return `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: ` + name + `
spec:
  accessModes: [ReadWriteOnce]
  volumeMode: Filesystem
  resources:
    requests:
      storage: 64Mi
`
}

// volumePodManifest runs the test program with the claim at /data on node.
func volumePodManifest(name, claim, node string, args ...string) string {
	var quoted []string
	for _, a := range args {
		quoted = append(quoted, strconv.Quote(a))
	}
	return `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubernetes.io/hostname: ` + node + `}
  containers:
  - name: web
    image: ` + webImageV1 + `
    imagePullPolicy: IfNotPresent
    command: [` + webBinary + `]
    args: [` + strings.Join(quoted, ", ") + `]
    volumeMounts:
    - {name: data, mountPath: /data}
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: ` + claim + `}
`
}

// loadBalancerManifest is a LoadBalancer Service on port for the pods
// selector (a YAML flow mapping's content) selects, on their port 8080.
func loadBalancerManifest(name, selector string, port int) string {
	return `apiVersion: v1
kind: Service
metadata:
  name: ` + name + `
spec:
  type: LoadBalancer
  selector: {` + selector + `}
  ports:
  - port: ` + strconv.Itoa(port) + `
    targetPort: 8080
`
}

// burnManifest is a deployment whose pods keep a CPU busy for 150 s after
// they start, and an autoscaler for it that acts at once in both
// directions (the defaults wait five minutes before scaling down).
const burnManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels: {app: burn}
  template:
    metadata:
      labels: {app: burn}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: ` + webImageV1 + `
        imagePullPolicy: IfNotPresent
        command: [` + webBinary + `, burn, "150"]
        resources:
          requests: {cpu: 100m}
          limits: {cpu: 200m}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: burn
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 50}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
    scaleDown:
      stabilizationWindowSeconds: 0
      policies:
      - {type: Percent, value: 100, periodSeconds: 15}
`
