package server

import (
	"encoding/base64"
	"fmt"
	"os"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/manifests"
	"github.com/skiff-io/skiff/pkg/agent"
	"github.com/skiff-io/skiff/pkg/agent/containerd"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/deploy"
	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/servicelb"
)

// Ports skiff's own components listen on at every node's addresses: a
// LoadBalancer Service on one of them would take the node's traffic from
// the component (kube-proxy's rules come first).
const (
	kubeletPort  = 10250
	flannelVXLAN = 8472
	ingressHTTP  = 80
	ingressHTTPS = 443
)

// bundledAddons renders the addons skiff ships for this cluster.
func bundledAddons(cfg *config.CompletedServer, certs *pki.ServerPKI) ([]deploy.Bundled, error) {
	images, err := agent.SystemImages(cfg.SystemDefaultRegistry)
	if err != nil {
		return nil, err
	}
	values := manifests.Values{
		ClusterDNS:         cfg.Cluster.ClusterDNS.String(),
		ClusterDomain:      cfg.Cluster.ClusterDomain,
		CoreDNSImage:       images.CoreDNS,
		IngressImage:       images.Ingress,
		LocalPathImage:     images.LocalPath,
		MetricsServerImage: images.MetricsServer,
		StoragePath:        cfg.LocalStoragePath,
		// One shim for all the addons' pods of a node: 6 MiB less for
		// every pod after the first.
		ShimGroupAnnotation: containerd.ShimGroupAnnotation,
		SystemShimGroup:     containerd.SystemShimGroup,
	}
	// The manifest carries these in base64, as Secrets, ConfigMaps'
	// binaryData and APIServices take them.
	for _, f := range []struct {
		path string
		to   *string
	}{
		{certs.MetricsServerCert, &values.MetricsServerCert},
		{certs.MetricsServerKey, &values.MetricsServerKey},
		{certs.AddonServingCACert, &values.AddonServingCA},
		{certs.KubeletTrustBundle, &values.KubeletCA},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("read %s for the bundled addons: %w", f.path, err)
		}
		*f.to = base64.StdEncoding.EncodeToString(b)
	}
	var out []deploy.Bundled
	for _, name := range manifests.Names() {
		content, err := manifests.Render(name, values)
		if err != nil {
			return nil, err
		}
		out = append(out, deploy.Bundled{Name: name, Content: content, Disabled: slices.Contains(cfg.Disable, name)})
	}
	// ServiceLB was a manifest and runs in the server now: the file an
	// earlier version wrote goes, and its pod with it.
	out = append(out, deploy.Bundled{Name: manifests.ServiceLB, Disabled: true})
	return out, nil
}

// reservedPorts are the node ports ServiceLB refuses to a LoadBalancer
// Service, each with what uses it.
func reservedPorts(cfg *config.CompletedServer) []servicelb.ReservedPort {
	ports := []servicelb.ReservedPort{
		{Port: int32(cfg.HTTPSPort), Protocol: corev1.ProtocolTCP, Reason: "the Skiff API server"},
		{Port: kubeletPort, Protocol: corev1.ProtocolTCP, Reason: "the kubelet"},
	}
	if cfg.FlannelBackend == "vxlan" {
		ports = append(ports, servicelb.ReservedPort{Port: flannelVXLAN, Protocol: corev1.ProtocolUDP, Reason: "the pod network (flannel VXLAN)"})
	}
	if !slices.Contains(cfg.Disable, "ingress") {
		const ingress = "the bundled ingress controller (disable it with --disable ingress)"
		ports = append(ports,
			servicelb.ReservedPort{Port: ingressHTTP, Protocol: corev1.ProtocolTCP, Reason: ingress},
			servicelb.ReservedPort{Port: ingressHTTPS, Protocol: corev1.ProtocolTCP, Reason: ingress})
	}
	return ports
}
