package server

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// nodeReaderRole lets every node read all Node objects: the pod network
// (flannel's kube subnet manager) learns the other nodes' subnets and
// tunnel endpoints from them, which the node authorizer alone refuses.
const nodeReaderRole = "skiff:node-reader"

// networkPolicyReaderRole lets every node read the pods, namespaces and
// NetworkPolicies of the whole cluster: a node's network policy controller
// matches policies' selectors against pods on every node. It is read-only,
// and bound only while the cluster enforces policies.
const networkPolicyReaderRole = "skiff:network-policy-reader"

// nodeRoles are the cluster roles bound to every node (group system:nodes).
func nodeRoles(networkPolicy bool) (bound []*rbacv1.ClusterRole, unbound []string) {
	bound = []*rbacv1.ClusterRole{{
		ObjectMeta: metav1.ObjectMeta{Name: nodeReaderRole},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"nodes"},
			Verbs:     []string{"get", "list", "watch"},
		}},
	}}
	policyReader := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: networkPolicyReaderRole},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"pods", "namespaces"},
			Verbs:     []string{"get", "list", "watch"},
		}, {
			APIGroups: []string{"networking.k8s.io"},
			Resources: []string{"networkpolicies"},
			Verbs:     []string{"get", "list", "watch"},
		}},
	}
	if networkPolicy {
		bound = append(bound, policyReader)
	} else {
		unbound = append(unbound, policyReader.Name)
	}
	return bound, unbound
}

// clusterRoles is one-shot work that puts skiff's own RBAC objects in
// place once the apiserver serves, before any node joins.
func clusterRoles(kubeconfig string, networkPolicy bool) component.Component {
	return component.Task("cluster-roles", func(ctx context.Context) error {
		return applyClusterRoles(ctx, kubeconfig, networkPolicy)
	})
}

func applyClusterRoles(ctx context.Context, kubeconfig string, networkPolicy bool) error {
	client, err := kubeclient.New(kubeconfig)
	if err != nil {
		return err
	}
	bound, unbound := nodeRoles(networkPolicy)
	for _, role := range bound {
		role.Labels = map[string]string{"app.kubernetes.io/managed-by": "skiff"}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name, Labels: role.Labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:nodes"}},
		}
		// The apiserver may still be finishing its own bootstrap (RBAC
		// post-start hooks); retry briefly.
		err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			if err := applyRole(ctx, client, role, binding); err != nil {
				logrus.Debugf("apply %s: %v", role.Name, err)
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("create RBAC role %s: %w", role.Name, err)
		}
	}
	// A role bound before the cluster was restarted with the feature off
	// must stop granting anything.
	for _, name := range unbound {
		err := client.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove RBAC binding %s: %w", name, err)
		}
	}
	return nil
}

func applyRole(ctx context.Context, client kubernetes.Interface, role *rbacv1.ClusterRole, binding *rbacv1.ClusterRoleBinding) error {
	roles := client.RbacV1().ClusterRoles()
	if cur, err := roles.Get(ctx, role.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := roles.Create(ctx, role, metav1.CreateOptions{}); err != nil {
			return err
		}
	} else if err != nil {
		return err
	} else {
		cur.Rules = role.Rules
		if _, err := roles.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	bindings := client.RbacV1().ClusterRoleBindings()
	if cur, err := bindings.Get(ctx, binding.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		_, err = bindings.Create(ctx, binding, metav1.CreateOptions{})
		return err
	} else if err != nil {
		return err
	} else {
		cur.Subjects = binding.Subjects
		_, err = bindings.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}
}
