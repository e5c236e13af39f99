package ingress

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"

	"github.com/skiff-io/skiff/pkg/eventreport"
)

// routingConfig is everything the listeners need, swapped as one value so a
// request never sees routes and certificates from different generations.
type routingConfig struct {
	routes       *RouteTable
	certificates *certificateSet
}

// problem is something wrong with an Ingress that its owner has to fix.
type (
	problem        = eventreport.Problem
	ingressProblem = eventreport.Found[*networkingv1.Ingress]
)

// configBuilder resolves Ingresses against the informer caches. It is used
// by one goroutine at a time and remembers state between builds: the
// round-robin positions and the parsed TLS key pairs.
type configBuilder struct {
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	secrets   corelisters.SecretLister
	rotations map[string]*atomic.Uint64
	keyPairs  map[string]parsedKeyPair
}

// parsedKeyPair caches the result of parsing a Secret, keyed by its bytes,
// because parsing every certificate on every rebuild is wasted work.
type parsedKeyPair struct {
	certPEM, keyPEM []byte
	cert            *tls.Certificate
	err             error
}

func newConfigBuilder(services corelisters.ServiceLister, slices discoverylisters.EndpointSliceLister, secrets corelisters.SecretLister) *configBuilder {
	return &configBuilder{
		services:  services,
		slices:    slices,
		secrets:   secrets,
		rotations: map[string]*atomic.Uint64{},
		keyPairs:  map[string]parsedKeyPair{},
	}
}

// build merges ingresses, which must already be in precedence order (oldest
// first), into one routing configuration and lists what is wrong with them.
func (b *configBuilder) build(ingresses []*networkingv1.Ingress) (*routingConfig, []ingressProblem) {
	routes := newRouteTableBuilder()
	certificates := newCertificateSet()
	backends := map[string]*Backend{}
	rotations := map[string]*atomic.Uint64{}
	usedKeyPairs := map[string]parsedKeyPair{}
	var problems []ingressProblem

	for _, ing := range ingresses {
		report := func(p *problem) {
			problems = append(problems, ingressProblem{Object: ing, Problem: *p})
		}
		resolve := func(ib networkingv1.IngressBackend) *Backend {
			if ib.Service == nil {
				report(&problem{Reason: "UnsupportedBackend", Message: "only Service backends are supported"})
				return nil
			}
			key := backendKey(ing.Namespace, ib.Service)
			if backend, ok := backends[key]; ok {
				return backend
			}
			endpoints, p := b.endpoints(ing.Namespace, ib.Service)
			if p != nil {
				report(p)
			}
			rotation := b.rotations[key]
			if rotation == nil {
				rotation = new(atomic.Uint64)
			}
			rotations[key] = rotation
			backend := newBackend(key, endpoints, rotation)
			backends[key] = backend
			return backend
		}

		if ing.Spec.DefaultBackend != nil {
			if backend := resolve(*ing.Spec.DefaultBackend); backend != nil {
				routes.setDefaultBackend(backend)
			}
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, path := range rule.HTTP.Paths {
				backend := resolve(path.Backend)
				if backend == nil {
					continue
				}
				pathType := networkingv1.PathTypeImplementationSpecific
				if path.PathType != nil {
					pathType = *path.PathType
				}
				routes.addPath(rule.Host, path.Path, pathType, backend)
			}
		}
		for _, tlsSpec := range ing.Spec.TLS {
			if tlsSpec.SecretName == "" {
				continue
			}
			cert, p := b.keyPair(ing.Namespace, tlsSpec.SecretName, usedKeyPairs)
			if p != nil {
				report(p)
				continue
			}
			certificates.add(cert, tlsSpec.Hosts)
		}
	}

	b.rotations = rotations
	b.keyPairs = usedKeyPairs
	return &routingConfig{routes: routes.build(), certificates: certificates}, problems
}

func backendKey(namespace string, svc *networkingv1.IngressServiceBackend) string {
	return namespace + "/" + svc.Name + ":" + servicePortRef(svc.Port)
}

func servicePortRef(port networkingv1.ServiceBackendPort) string {
	if port.Name != "" {
		return port.Name
	}
	return strconv.Itoa(int(port.Number))
}

// endpoints resolves a Service backend to the addresses of its ready
// endpoints. A problem means the Ingress points at something that does not
// exist; an existing Service without ready endpoints is not a problem of the
// Ingress.
func (b *configBuilder) endpoints(namespace string, ref *networkingv1.IngressServiceBackend) ([]string, *problem) {
	svc, err := b.services.Services(namespace).Get(ref.Name)
	if apierrors.IsNotFound(err) {
		return nil, &problem{Reason: "ServiceNotFound", Message: fmt.Sprintf("Service %s/%s not found", namespace, ref.Name)}
	}
	if err != nil {
		return nil, &problem{Reason: "ServiceNotFound", Message: fmt.Sprintf("get Service %s/%s: %v", namespace, ref.Name, err)}
	}
	servicePort := findServicePort(svc, ref.Port)
	if servicePort == nil {
		return nil, &problem{Reason: "ServicePortNotFound", Message: fmt.Sprintf("Service %s/%s has no port %s", namespace, ref.Name, servicePortRef(ref.Port))}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return []string{net.JoinHostPort(svc.Spec.ExternalName, strconv.Itoa(int(servicePort.Port)))}, nil
	}

	slices, err := b.slices.EndpointSlices(namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: ref.Name}))
	if err != nil {
		return nil, &problem{Reason: "EndpointsUnavailable", Message: fmt.Sprintf("list EndpointSlices of Service %s/%s: %v", namespace, ref.Name, err)}
	}
	seen := map[string]bool{}
	var addresses []string
	for _, slice := range slices {
		// The EndpointSlice controller names each slice port after the
		// Service port, and has already resolved a named targetPort to the
		// number of the pods' container port.
		port := findSlicePort(slice, servicePort.Name)
		if port == nil {
			continue
		}
		for _, ep := range slice.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			// The addresses of one endpoint are fungible; the first is enough.
			if len(ep.Addresses) == 0 {
				continue
			}
			address := net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*port)))
			if !seen[address] {
				seen[address] = true
				addresses = append(addresses, address)
			}
		}
	}
	sort.Strings(addresses)
	return addresses, nil
}

func findServicePort(svc *corev1.Service, ref networkingv1.ServiceBackendPort) *corev1.ServicePort {
	for i := range svc.Spec.Ports {
		port := &svc.Spec.Ports[i]
		if ref.Name != "" && port.Name == ref.Name {
			return port
		}
		if ref.Name == "" && port.Port == ref.Number {
			return port
		}
	}
	return nil
}

func findSlicePort(slice *discoveryv1.EndpointSlice, servicePortName string) *int32 {
	for _, port := range slice.Ports {
		name := ""
		if port.Name != nil {
			name = *port.Name
		}
		if name != servicePortName || port.Port == nil {
			continue
		}
		if port.Protocol != nil && *port.Protocol != corev1.ProtocolTCP {
			continue
		}
		return port.Port
	}
	return nil
}

// keyPair loads the certificate of a TLS Secret, recording every Secret it
// parses in used so the cache only keeps Secrets still referenced.
func (b *configBuilder) keyPair(namespace, name string, used map[string]parsedKeyPair) (*tls.Certificate, *problem) {
	secret, err := b.secrets.Secrets(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, &problem{Reason: "TLSSecretNotFound", Message: fmt.Sprintf("TLS Secret %s/%s not found (only Secrets of type %q are watched)", namespace, name, corev1.SecretTypeTLS)}
	}
	if err != nil {
		return nil, &problem{Reason: "TLSSecretNotFound", Message: fmt.Sprintf("get TLS Secret %s/%s: %v", namespace, name, err)}
	}
	if secret.Type != corev1.SecretTypeTLS {
		return nil, &problem{Reason: "InvalidTLSSecret", Message: fmt.Sprintf("Secret %s/%s is of type %q, not %q", namespace, name, secret.Type, corev1.SecretTypeTLS)}
	}

	key := namespace + "/" + name
	certPEM, keyPEM := secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]
	parsed, ok := used[key]
	if !ok {
		parsed, ok = b.keyPairs[key]
		if !ok || !bytes.Equal(parsed.certPEM, certPEM) || !bytes.Equal(parsed.keyPEM, keyPEM) {
			parsed = parsedKeyPair{certPEM: certPEM, keyPEM: keyPEM}
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				parsed.err = err
			} else {
				parsed.cert = &cert
			}
		}
		used[key] = parsed
	}
	if parsed.err != nil {
		return nil, &problem{Reason: "InvalidTLSSecret", Message: fmt.Sprintf("Secret %s/%s does not hold a valid TLS key pair: %v", namespace, name, parsed.err)}
	}
	return parsed.cert, nil
}
