package flags

import (
	"slices"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/pki"
)

func testServer(t *testing.T) (*config.CompletedServer, *pki.ServerPKI) {
	t.Helper()
	p, err := pki.EnsureServer(t.TempDir(), pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opts := &config.Server{DataDir: "/var/lib/skiff", BindAddress: "0.0.0.0", HTTPSPort: 6443, AdvertiseAddress: "192.0.2.1",
		ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", KubeconfigMode: "0600"}
	cfg, err := opts.Complete()
	if err != nil {
		t.Fatal(err)
	}
	return cfg, p
}

// value returns the value of --name in args, and whether it is there once.
func value(args []string, name string) (string, bool) {
	var found []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		return "", false
	}
	return found[0], true
}

func TestAPIServerSecurityDefaults(t *testing.T) {
	cfg, p := testServer(t)
	args := APIServer(cfg, p, Etcd{Servers: []string{"unix://kine.sock"}}, "")
	want := map[string]string{
		"anonymous-auth":                "false",
		"authorization-mode":            "Node,RBAC",
		"enable-admission-plugins":      "NodeRestriction",
		"client-ca-file":                p.ClientCACert,
		"tls-cert-file":                 p.ServingCert,
		"kubelet-certificate-authority": p.KubeletTrustBundle,
		"kubelet-client-certificate":    p.KubeletClientCert,
		"service-account-key-file":      p.ServiceAccountKey,
		"requestheader-client-ca-file":  p.RequestHeaderCACert,
		"profiling":                     "false",
		"etcd-servers":                  "unix://kine.sock",
		"advertise-address":             "192.0.2.1",
		"service-cluster-ip-range":      "10.43.0.0/16",
	}
	for name, w := range want {
		if got, ok := value(args, name); !ok || got != w {
			t.Errorf("--%s = %q (once: %v), want %q", name, got, ok, w)
		}
	}
	if _, ok := value(args, "encryption-provider-config"); ok {
		t.Error("an encryption config without --secrets-encryption")
	}
	if _, ok := value(args, "etcd-certfile"); ok {
		t.Error("a client certificate for kine's socket")
	}
	args = APIServer(cfg, p, Etcd{}, "/data/enc.json")
	if got, _ := value(args, "encryption-provider-config"); got != "/data/enc.json" {
		t.Errorf("--encryption-provider-config = %q", got)
	}
	if got, _ := value(args, "encryption-provider-config-automatic-reload"); got != "true" {
		t.Error("the encryption config is not reloaded, so a key rotation would need a restart")
	}
}

func TestAPIServerReachesEtcdWithAClientCertificate(t *testing.T) {
	cfg, p := testServer(t)
	args := APIServer(cfg, p, Etcd{Servers: []string{"https://127.0.0.1:2379"}, CAFile: "/tls/etcd/server-ca.crt", CertFile: "/tls/etcd/client.crt", KeyFile: "/tls/etcd/client.key"}, "")
	for name, w := range map[string]string{
		"etcd-servers":  "https://127.0.0.1:2379",
		"etcd-cafile":   "/tls/etcd/server-ca.crt",
		"etcd-certfile": "/tls/etcd/client.crt",
		"etcd-keyfile":  "/tls/etcd/client.key",
	} {
		if got, ok := value(args, name); !ok || got != w {
			t.Errorf("--%s = %q (once: %v), want %q", name, got, ok, w)
		}
	}
}

func TestLeaderElectionWhereServersCanBeSeveral(t *testing.T) {
	cfg, p := testServer(t)
	for _, tc := range []struct {
		kind config.DatastoreKind
		want string
	}{{config.EmbeddedSQLite, "false"}, {config.EmbeddedEtcd, "true"}, {config.External, "true"}} {
		cfg.Datastore.Kind = tc.kind
		if got, _ := value(ControllerManager(cfg, p, "/cred/cm.kubeconfig"), "leader-elect"); got != tc.want {
			t.Errorf("datastore kind %v: controller-manager --leader-elect=%s, want %s", tc.kind, got, tc.want)
		}
		// skiff elects the scheduler itself: upstream's election ends the
		// process on every stop.
		if got, _ := value(Scheduler("/cred/s.kubeconfig"), "leader-elect"); got != "false" {
			t.Errorf("datastore kind %v: scheduler --leader-elect=%s, want false", tc.kind, got)
		}
	}
}

func TestControllerManagerSigners(t *testing.T) {
	cfg, p := testServer(t)
	args := ControllerManager(cfg, p, "/cred/cm.kubeconfig")
	want := map[string]string{
		// Kubelet serving certificates never come from the CA pods trust.
		"cluster-signing-kubelet-serving-cert-file": p.KubeletServingCACert,
		"cluster-signing-kubelet-serving-key-file":  p.KubeletServingCAKey,
		"cluster-signing-kubelet-client-cert-file":  p.ClientCACert,
		"root-ca-file":                    p.ServerCACert,
		"kubeconfig":                      "/cred/cm.kubeconfig",
		"bind-address":                    "127.0.0.1",
		"leader-elect":                    "false",
		"leader-elect-renew-deadline":     "30s",
		"use-service-account-credentials": "true",
		"cluster-cidr":                    "10.42.0.0/16",
	}
	for name, w := range want {
		if got, ok := value(args, name); !ok || got != w {
			t.Errorf("--%s = %q (once: %v), want %q", name, got, ok, w)
		}
	}
	if slices.Contains(args, "--cluster-signing-kubelet-serving-cert-file="+p.ServerCACert) {
		t.Error("the controller-manager signs kubelet serving certificates with the server CA")
	}
}

func TestSchedulerListensOnLoopback(t *testing.T) {
	args := Scheduler("/cred/s.kubeconfig")
	if got, _ := value(args, "bind-address"); got != "127.0.0.1" {
		t.Errorf("--bind-address = %q", got)
	}
	if got, _ := value(args, "secure-port"); got != "10259" {
		t.Errorf("--secure-port = %q", got)
	}
}
