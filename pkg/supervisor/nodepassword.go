package supervisor

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodePasswordHeader carries the node's password: a secret the agent keeps
// in its data dir, recorded by the server at the first join so that no other
// host can take the node's name (and its credentials) later.
const NodePasswordHeader = "Skiff-Node-Password"

const (
	nodePasswordNamespace = "kube-system"
	nodePasswordType      = "skiff.io/node-password"
	nodePasswordKey       = "hash"
)

// ErrNodeNameTaken means another host holds the node name, and its Node
// still exists.
var ErrNodeNameTaken = errors.New("node name taken")

// ErrNodeNameClaimed means another host joined with the node name and has
// not registered its Node yet.
var ErrNodeNameClaimed = errors.New("node name claimed by a host whose node has not registered")

// ErrNoNodePassword means the request carried no usable node password.
var ErrNoNodePassword = errors.New("the request carries no node password (" + NodePasswordHeader + "); upgrade the agent")

// NodePasswordSecretName is the Secret that records a node's password hash.
func NodePasswordSecretName(node string) string { return node + ".node-password.skiff" }

// NodePasswords checks node passwords against Secrets in kube-system.
type NodePasswords struct {
	// Client returns a client for the cluster; it is called per request so
	// the supervisor can start before the apiserver serves.
	Client func() (kubernetes.Interface, error)
}

// Verify records the password of a node seen for the first time, and
// otherwise checks it matches the recorded one.
func (n *NodePasswords) Verify(ctx context.Context, node, password string) error {
	if len(password) < 16 {
		return ErrNoNodePassword
	}
	client, err := n.Client()
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(password))
	return n.verifyHash(ctx, client, node, hex.EncodeToString(sum[:]))
}

func (n *NodePasswords) verifyHash(ctx context.Context, client kubernetes.Interface, node, hash string) error {
	secrets := client.CoreV1().Secrets(nodePasswordNamespace)
	name := NodePasswordSecretName(node)
	secret, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nodePasswordNamespace},
			Type:       nodePasswordType,
			Data:       map[string][]byte{nodePasswordKey: []byte(hash)},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Two joins raced; check against the winner.
			return n.verifyHash(ctx, client, node, hash)
		}
		if err != nil {
			return fmt.Errorf("record node password: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read node password: %w", err)
	}
	if subtle.ConstantTimeCompare(secret.Data[nodePasswordKey], []byte(hash)) != 1 {
		return n.claim(ctx, client, node, secret, hash)
	}
	return nil
}

// claim gives the node name to a host whose password differs from the
// recorded one, when the host that recorded it has lost the name: its
// Node, which owned the Secret (OwnNodePassword), was deleted. The garbage
// collector deletes such a Secret by itself; claim serves a host that asks
// before it has.
func (n *NodePasswords) claim(ctx context.Context, client kubernetes.Interface, node string, secret *corev1.Secret, hash string) error {
	_, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case err == nil:
		return ErrNodeNameTaken
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("look up node %s: %w", node, err)
	case !ownedByNode(secret, node):
		// The other host joined but its kubelet has not registered the
		// Node yet (or never could): nothing says it is gone.
		return ErrNodeNameClaimed
	}
	claimed := secret.DeepCopy()
	claimed.Data = map[string][]byte{nodePasswordKey: []byte(hash)}
	claimed.OwnerReferences = nil
	_, err = client.CoreV1().Secrets(nodePasswordNamespace).Update(ctx, claimed, metav1.UpdateOptions{})
	switch {
	case err == nil:
		logrus.Infof("node %s: a new host took the node name; the Node of the host that had it was deleted", node)
		return nil
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		// Another host claimed it first, or the garbage collector deleted
		// the Secret meanwhile: decide again on what is there now.
		return n.verifyHash(ctx, client, node, hash)
	default:
		return fmt.Errorf("record node password: %w", err)
	}
}

// ownedByNode reports whether secret names the Node node as its owner.
func ownedByNode(secret *corev1.Secret, node string) bool {
	for _, o := range secret.OwnerReferences {
		if o.APIVersion == "v1" && o.Kind == "Node" && o.Name == node {
			return true
		}
	}
	return false
}

// OwnNodePassword makes node the owner of its node-password Secret, so
// that deleting the Node deletes the Secret (the controller-manager's
// garbage collector does) and frees the name for a reinstalled host. It is
// called for every Node the servers see appear, and does nothing when the
// Secret is already owned by it or there is no Secret (a Node made by
// hand).
func OwnNodePassword(ctx context.Context, client kubernetes.Interface, node *corev1.Node) error {
	secrets := client.CoreV1().Secrets(nodePasswordNamespace)
	secret, err := secrets.Get(ctx, NodePasswordSecretName(node.Name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the node password of %s: %w", node.Name, err)
	}
	for _, o := range secret.OwnerReferences {
		if o.UID == node.UID {
			return nil
		}
	}
	owned := secret.DeepCopy()
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
	if _, err := secrets.Update(ctx, owned, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		// A conflict means another server (or a claim) changed it first;
		// every server start sees each Node appear again and retries.
		return fmt.Errorf("make node %s the owner of its node password: %w", node.Name, err)
	}
	return nil
}
