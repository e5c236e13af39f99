package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHighAvailabilityOnPostgres runs two servers on one PostgreSQL
// database (scripts/postgres runs a throwaway instance of it): the first
// in the host's network namespace, the second in its own network and mount
// namespaces on the test bridge, given only the same --datastore-endpoint
// and --token. It checks that they form one cluster, that a server with
// another token is refused, and that the cluster survives a kill -9 of
// either server: the API answers through the other, which takes over the
// leader-elected controllers, and the killed server comes back.
func TestHighAvailabilityOnPostgres(t *testing.T) {
	preflightNode(t)
	setupTestNetwork(t)
	// The database listens on the bridge, where the second server reaches
	// it, and on loopback, for whoever inspects it on the host.
	db := startPostgres(t, bridgeIP+",127.0.0.1")
	endpoint := db.endpoint(bridgeIP)
	const token = "skt-ha-postgres-secret"

	s := newNode(t, "--node-ip", bridgeIP, "--flannel-iface", bridgeName, "--datastore-endpoint", endpoint, "--token", token)
	t.Cleanup(func() {
		if t.Failed() {
			dumpNetworkDiagnostics(t)
		}
	})
	s.start()
	s.waitReady()
	first := s.waitNodeReady(3 * time.Minute).Metadata.Name
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	second := newDatastoreServer(t, s, "skt-pg-server2", nodeNets[1].ip, endpoint, token)
	t.Cleanup(func() {
		if t.Failed() {
			keepLogs(t, "ha-postgres", []string{s.logPath, second.logPath})
		}
	})
	second.start()
	s.waitNodes([]string{first, second.name}, 5*time.Minute, second.alive)

	// via[i] reaches the cluster through server i only.
	ips := []string{bridgeIP, second.ip}
	via := []*server{s.through(t, ips[0]), s.through(t, ips[1])}
	// Upstream components name themselves by host name in their leases,
	// skiff's own leader election by node name.
	hostNames := []string{host, second.name}
	nodeNames := []string{first, second.name}
	servers := []interface {
		kill()
		start()
	}{s, second}
	alive := []func(){s.alive, second.alive}

	run := func(name string, f func(t *testing.T)) bool {
		return t.Run(name, func(t *testing.T) {
			defer s.bind(t)()
			defer second.bind(t)()
			for _, v := range via {
				defer v.bind(t)()
			}
			f(t)
		})
	}

	if !run("both servers hold the same cluster CA", func(t *testing.T) {
		a := readFile(t, filepath.Join(s.paths().Server.TLSDir, "server-ca.crt"))
		b := readFile(t, filepath.Join(second.paths().Server.TLSDir, "server-ca.crt"))
		if a != b {
			t.Fatal("the servers' server-ca.crt differ: they made two clusters, not one")
		}
	}) {
		t.FailNow()
	}

	if !run("writes through either server are read through the other", func(t *testing.T) {
		writesReadEverywhere(t, via, ips, "pg-written-via")
	}) {
		t.FailNow()
	}

	// Before the kills, so that the restarts below also show that the
	// refused server changed nothing the others rely on.
	run("a server with another token is refused", func(t *testing.T) {
		n := newDatastoreServer(t, s, "skt-pg-othertoken", nodeNets[2].ip, endpoint, "skt-another-secret")
		defer n.bind(t)()
		code, out := n.runToExit(2 * time.Minute)
		if code == 0 || !strings.Contains(out, "the datastore already holds a cluster made with another token") {
			t.Fatalf("skiff server with another token on the cluster's datastore: exit %d, want non-zero and the cause named:\n%s", code, tail(out, 2000))
		}
		if files, _ := filepath.Glob(filepath.Join(n.paths().Server.TLSDir, "*.key")); len(files) > 0 {
			t.Errorf("the refused server has keys: %v", files)
		}
	})

	for killed := range via {
		survivor := 1 - killed
		name := fmt.Sprintf("the cluster survives the loss of server %d", killed+1)
		if !run(name, func(t *testing.T) {
			v := via[survivor]
			held := map[string]string{}
			for _, lease := range []string{"kube-controller-manager", "skiff-kube-scheduler", "skiff-deploy"} {
				held[lease] = leaseHolder(t, v, lease)
			}
			t.Logf("killing server %d (%s); lease holders before: %v", killed+1, ips[killed], held)
			servers[killed].kill()
			down := time.Now()

			eventually(t, time.Minute, func() error {
				out, err := v.kubectlErr("get", "--raw", "/readyz")
				if err != nil || strings.TrimSpace(out) != "ok" {
					return fmt.Errorf("the apiserver at %s is not ready: %v", ips[survivor], err)
				}
				return nil
			})

			// The survivor takes over whatever the killed server led.
			eventually(t, 2*time.Minute, func() error {
				alive[survivor]()
				for lease, want := range map[string]string{
					"kube-controller-manager": hostNames[survivor],
					"skiff-kube-scheduler":    nodeNames[survivor],
					"skiff-deploy":            nodeNames[survivor],
				} {
					if got := leaseHolder(t, v, lease); got != want {
						return fmt.Errorf("the %s lease is held by %q, want the surviving server %q", lease, got, want)
					}
				}
				return nil
			})
			t.Logf("server %d holds every lease %s after the kill", survivor+1, time.Since(down).Round(time.Second))

			// Its controllers act: the killed server's node is seen down,
			// and a Deployment on the surviving node is scheduled and
			// rolled out.
			written := fmt.Sprintf("pg-after-loss-of-%d", killed+1)
			v.kubectl("create", "configmap", written, "--from-literal=by="+ips[survivor])
			v.apply(agentDeployment(written, 1, nodeNames[survivor]))
			waitReadyReplicas(t, v, written, 1, 3*time.Minute)
			eventually(t, 3*time.Minute, func() error {
				n, err := v.node(nodeNames[killed])
				if err != nil {
					return err
				}
				if n.condition("Ready") == "True" {
					return fmt.Errorf("node %s of the killed server is still Ready", nodeNames[killed])
				}
				return nil
			})
			for i := range via {
				if got := v.kubectl("get", "configmap", fmt.Sprintf("pg-written-via-%d", i), "-o", "jsonpath={.data.by}"); got != ips[i] {
					t.Errorf("configmap written through %s before the kill reads by=%q", ips[i], got)
				}
			}

			restarted := time.Now()
			servers[killed].start()
			if killed == 0 {
				s.waitReady()
			}
			v.waitKubeletSince(nodeNames[killed], restarted, 4*time.Minute)
			v.waitNodes(nodeNames, 4*time.Minute, alive...)
			eventually(t, 2*time.Minute, func() error {
				out, err := via[killed].kubectlErr("get", "configmap", written, "-o", "jsonpath={.data.by}")
				if err != nil {
					return err
				}
				if out != ips[survivor] {
					return fmt.Errorf("configmap %s read through the restarted server: by=%q", written, out)
				}
				return nil
			})
		}) {
			t.FailNow()
		}
	}
}

// newDatastoreServer prepares `skiff server` as node name at ip, in its own
// namespaces, on the external datastore at endpoint. It is
// newJoiningServer without --server: a server on an external datastore
// joins by the datastore and token alone.
func newDatastoreServer(t *testing.T, s *server, name, ip, endpoint, token string) *agentNode {
	t.Helper()
	prepareAgentCgroups(t, agentCgroupRoot(name))
	n := newJoiningServer(t, s, name, ip, token, "--datastore-endpoint", endpoint)
	args := n.args[:0:0]
	for i := 0; i < len(n.args); i++ {
		if n.args[i] == "--server" {
			i++ // and its value
			continue
		}
		args = append(args, n.args[i])
	}
	n.args = args
	return n
}

// --- PostgreSQL ----------------------------------------------------------------

// postgresDirPrefix names the instances' dirs under the temp dir, so that
// what an interrupted run left is found and removed.
const postgresDirPrefix = "skiff-e2e-postgres-"

// postgresInstance is a throwaway PostgreSQL run by scripts/postgres.
type postgresInstance struct {
	dir, role, password, database string
	port                          int
}

// endpoint is the kine endpoint of the instance's database at addr.
func (p postgresInstance) endpoint(addr string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", p.role, p.password, addr, p.port, p.database)
}

// startPostgres starts a PostgreSQL instance (installing PostgreSQL with
// apt if needed) listening on the comma-separated addresses, with a role
// owning an empty database. The cleanup stops it and removes its dir: the
// system's own PostgreSQL cluster is never touched.
func startPostgres(t *testing.T, listen string) postgresInstance {
	t.Helper()
	stale, _ := filepath.Glob(filepath.Join(os.TempDir(), postgresDirPrefix+"*"))
	for _, dir := range stale {
		t.Logf("preflight: removing the PostgreSQL instance an earlier run left in %s", dir)
		if out, err := postgresScript(t, 2*time.Minute, "stop", dir); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}

	// A dir of its own under the temp dir, which the postgres user can
	// reach (a test's temp dirs are root's alone).
	dir, err := os.MkdirTemp("", postgresDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	p := postgresInstance{dir: dir, role: "skiff", password: hex.EncodeToString(secret), database: "skiff", port: freePort(t)}
	var pid int
	t.Cleanup(func() {
		if out, err := postgresScript(t, 2*time.Minute, "stop", dir); err != nil {
			t.Errorf("cleanup: %v\n%s", err, out)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: the PostgreSQL dir %s is still there (%v)", dir, err)
		}
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			t.Errorf("cleanup: PostgreSQL (pid %d) still runs", pid)
		}
	})
	out, err := postgresScript(t, 10*time.Minute, "start", dir, "--port", strconv.Itoa(p.port), "--listen", listen,
		"--role", p.role, "--password", p.password, "--database", p.database)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The first line of postmaster.pid is the server's pid.
	if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	}
	t.Logf("PostgreSQL (pid %d) in %s on %s port %d", pid, dir, listen, p.port)
	return p
}

// postgresScript runs scripts/postgres with args and returns its output.
func postgresScript(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	script, err := filepath.Abs("../../scripts/postgres")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, args...)
	// The instance it starts must not hold the output pipe open: the
	// script's PostgreSQL logs to its own file.
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("scripts/postgres %s: %v", args[0], err)
	}
	return string(out), nil
}
