package pki

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestWriteKubeconfig(t *testing.T) {
	p := mustEnsure(t, t.TempDir(), ServerOptions{})
	out := t.TempDir()
	kc := Kubeconfig{Server: "https://127.0.0.1:6443", CACert: p.ServerCACert, CertFile: p.AdminCert, KeyFile: p.AdminKey}

	t.Run("embed", func(t *testing.T) {
		path := filepath.Join(out, "nested", "dir", "admin.kubeconfig")
		embed := kc
		embed.Embed = true
		if err := WriteKubeconfig(path, embed, 0o600); err != nil {
			t.Fatal(err)
		}
		if m := fileMode(t, path); m != 0o600 {
			t.Errorf("mode %o, want 0600", m)
		}
		if m := fileMode(t, filepath.Dir(path)); m != 0o755 {
			t.Errorf("parent dir mode %o, want 0755", m)
		}
		cfg, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ctx := cfg.Contexts[cfg.CurrentContext]
		if cfg.CurrentContext != "default" || ctx == nil || ctx.Cluster != "default" || ctx.AuthInfo != "default" {
			t.Fatalf("unexpected context setup: current %q, %+v", cfg.CurrentContext, ctx)
		}
		cluster, user := cfg.Clusters["default"], cfg.AuthInfos["default"]
		if cluster.Server != kc.Server {
			t.Errorf("server = %q", cluster.Server)
		}
		for name, pair := range map[string][2]any{
			"ca":   {cluster.CertificateAuthorityData, p.ServerCACert},
			"cert": {user.ClientCertificateData, p.AdminCert},
			"key":  {user.ClientKeyData, p.AdminKey},
		} {
			want, err := os.ReadFile(pair[1].(string))
			if err != nil {
				t.Fatal(err)
			}
			if string(pair[0].([]byte)) != string(want) {
				t.Errorf("embedded %s data differs from %s", name, pair[1])
			}
		}
		if cluster.CertificateAuthority != "" || user.ClientCertificate != "" || user.ClientKey != "" {
			t.Error("embedded kubeconfig also references file paths")
		}
		// The result must be usable to build a client config.
		if _, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig(); err != nil {
			t.Errorf("kubeconfig not usable: %v", err)
		}
	})

	t.Run("paths and chmod of existing file", func(t *testing.T) {
		path := filepath.Join(out, "paths.kubeconfig")
		if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteKubeconfig(path, kc, 0o600); err != nil {
			t.Fatal(err)
		}
		if m := fileMode(t, path); m != 0o600 {
			t.Errorf("mode %o, want 0600", m)
		}
		cfg, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cluster, user := cfg.Clusters["default"], cfg.AuthInfos["default"]
		if cluster.Server != kc.Server || cluster.CertificateAuthority != p.ServerCACert ||
			user.ClientCertificate != p.AdminCert || user.ClientKey != p.AdminKey {
			t.Errorf("paths not preserved: %+v %+v", cluster, user)
		}
		if len(cluster.CertificateAuthorityData) != 0 || len(user.ClientKeyData) != 0 {
			t.Error("non-embedded kubeconfig contains data")
		}
	})

	t.Run("missing server", func(t *testing.T) {
		if err := WriteKubeconfig(filepath.Join(out, "x"), Kubeconfig{}, 0o600); err == nil {
			t.Error("accepted kubeconfig without server")
		}
	})
}
