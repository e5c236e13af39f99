package supervisor

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

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

// ErrNodeNameTaken means another host holds the node name.
var ErrNodeNameTaken = errors.New("node name taken")

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
	hash := hex.EncodeToString(sum[:])
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
			return n.Verify(ctx, node, password)
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
		return ErrNodeNameTaken
	}
	return nil
}
