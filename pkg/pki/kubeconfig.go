package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

const kubeconfigName = "default"

// Kubeconfig describes one kubeconfig file with a single cluster, user and context
// named "default".
type Kubeconfig struct {
	Server   string // e.g. https://127.0.0.1:6443
	CACert   string // path of the CA file to trust
	CertFile string // client cert path
	KeyFile  string // client key path
	Embed    bool   // embed CA/cert/key data instead of referencing paths
}

// WriteKubeconfig writes the file atomically with the given mode, creating parent
// directories (0755) as needed. An existing file is replaced, so it ends up with mode too.
func WriteKubeconfig(path string, kc Kubeconfig, mode os.FileMode) error {
	if kc.Server == "" {
		return errors.New("write kubeconfig: server URL is empty")
	}
	cluster := clientcmdapi.NewCluster()
	cluster.Server = kc.Server
	user := clientcmdapi.NewAuthInfo()
	if kc.Embed {
		var err error
		if cluster.CertificateAuthorityData, err = readIfSet(kc.CACert); err != nil {
			return fmt.Errorf("write kubeconfig %s: %w", path, err)
		}
		if user.ClientCertificateData, err = readIfSet(kc.CertFile); err != nil {
			return fmt.Errorf("write kubeconfig %s: %w", path, err)
		}
		if user.ClientKeyData, err = readIfSet(kc.KeyFile); err != nil {
			return fmt.Errorf("write kubeconfig %s: %w", path, err)
		}
	} else {
		cluster.CertificateAuthority = kc.CACert
		user.ClientCertificate = kc.CertFile
		user.ClientKey = kc.KeyFile
	}
	ctx := clientcmdapi.NewContext()
	ctx.Cluster = kubeconfigName
	ctx.AuthInfo = kubeconfigName

	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[kubeconfigName] = cluster
	cfg.AuthInfos[kubeconfigName] = user
	cfg.Contexts[kubeconfigName] = ctx
	cfg.CurrentContext = kubeconfigName

	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("serialize kubeconfig %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory for kubeconfig %s: %w", path, err)
	}
	// An unchanged kubeconfig is left alone, so that its readers see no
	// change when a restart or a renewal had nothing to renew.
	_, err = fileutil.WriteIfChanged(path, data, mode)
	return err
}

func readIfSet(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s for embedding: %w", path, err)
	}
	return b, nil
}
