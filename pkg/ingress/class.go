package ingress

import (
	networkingv1 "k8s.io/api/networking/v1"
)

const (
	// legacyClassAnnotation predates spec.ingressClassName and, when present,
	// decides on its own which controller owns the Ingress.
	legacyClassAnnotation  = "kubernetes.io/ingress.class"
	defaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"
)

// classFilter decides which Ingresses this controller serves.
type classFilter struct {
	name string
	// isDefault is true when the IngressClass of that name is annotated as
	// the cluster default, which makes it own Ingresses without a class.
	isDefault bool
}

func newClassFilter(name string, class *networkingv1.IngressClass) classFilter {
	return classFilter{
		name:      name,
		isDefault: class != nil && class.Annotations[defaultClassAnnotation] == "true",
	}
}

func (f classFilter) handles(ing *networkingv1.Ingress) bool {
	if class, ok := ing.Annotations[legacyClassAnnotation]; ok {
		return class == f.name
	}
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName == f.name
	}
	return f.isDefault
}
