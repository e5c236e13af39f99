package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerConfigSources starts a server configured through a config file
// and the environment, on a datastore given as an explicit kine endpoint,
// and checks each setting took effect.
func TestServerConfigSources(t *testing.T) {
	s := newServer(t)
	dir := filepath.Dir(s.kubeconfig)
	dbPath := filepath.Join(dir, "elsewhere", "cluster.db")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		t.Fatal(err)
	}
	// The config file sets the kubeconfig mode and a SAN; the environment
	// sets the datastore endpoint.
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("write-kubeconfig-mode: \"0640\"\ntls-san:\n  - from-file.example.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, a := range s.args {
		if a == "--config" {
			s.args[i+1] = cfgFile
		}
	}
	t.Setenv("SKIFF_DATASTORE_ENDPOINT", "sqlite://"+dbPath)
	s.start()
	s.waitReady()

	assertMode(t, s.kubeconfig, 0o640)
	s.kubectl("create", "configmap", "where", "--from-literal=db=external")
	if _, err := os.Stat(dbPath); err != nil {
		t.Fatalf("the --datastore-endpoint database was not used: %v", err)
	}
	if _, err := os.Stat(s.paths().Server.StateDB); err == nil {
		t.Fatal("the embedded database was created although an endpoint was given")
	}
	serving, err := os.ReadFile(filepath.Join(s.paths().Server.TLSDir, "serving-kube-apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseCert(t, serving)
	if err := leaf.VerifyHostname("from-file.example.test"); err != nil {
		t.Fatalf("tls-san from the config file: %v", err)
	}

	// Changing the SANs re-issues the serving certificate on restart; the
	// data stays where the endpoint points.
	s.stop()
	s.args = append(s.args, "--tls-san", "added-later.example.test")
	s.start()
	s.waitReady()
	reissued, err := os.ReadFile(filepath.Join(s.paths().Server.TLSDir, "serving-kube-apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := parseCert(t, reissued).VerifyHostname("added-later.example.test"); err != nil {
		t.Fatalf("serving certificate not re-issued with the new SAN: %v", err)
	}
	if out := s.kubectl("get", "configmap", "where", "-o", "jsonpath={.data.db}"); strings.TrimSpace(out) != "external" {
		t.Fatalf("configmap after restart: %q", out)
	}
	s.stop()
}
