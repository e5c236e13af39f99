// Package pki creates and maintains the cluster's certificates, kubeconfigs and join token.
package pki
