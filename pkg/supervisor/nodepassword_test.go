package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// The life of a node name: the first host's password is recorded; its
// Node, once registered, owns the record; another host is refused while
// that Node exists and takes the name once it is deleted.
func TestNodePasswordFollowsTheNode(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	p := &NodePasswords{Client: func() (kubernetes.Interface, error) { return cs, nil }}
	first, second := strings.Repeat("a", 32), strings.Repeat("b", 32)

	if err := p.Verify(ctx, "edge-1", "short"); !errors.Is(err, ErrNoNodePassword) {
		t.Fatalf("a short password: %v, want ErrNoNodePassword", err)
	}
	if err := p.Verify(ctx, "edge-1", first); err != nil {
		t.Fatalf("first join: %v", err)
	}
	if err := p.Verify(ctx, "edge-1", first); err != nil {
		t.Fatalf("the same host again (a reboot): %v", err)
	}
	if err := p.Verify(ctx, "edge-1", second); !errors.Is(err, ErrNodeNameClaimed) {
		t.Fatalf("another host before the Node registered: %v, want ErrNodeNameClaimed", err)
	}

	// The servers' cache sees the Node appear and makes it the owner.
	startCache(t, cs)
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "edge-1", UID: types.UID("uid-1")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owner := func() []metav1.OwnerReference {
		s, err := cs.CoreV1().Secrets("kube-system").Get(ctx, NodePasswordSecretName("edge-1"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.OwnerReferences
	}
	eventually(t, func() bool {
		o := owner()
		return len(o) == 1 && o[0].Kind == "Node" && o[0].Name == "edge-1" && o[0].UID == node.UID
	}, "the Node did not become the owner of its node password")

	if err := p.Verify(ctx, "edge-1", second); !errors.Is(err, ErrNodeNameTaken) {
		t.Fatalf("another host while the Node exists: %v, want ErrNodeNameTaken", err)
	}

	// The Node is deleted; before the garbage collector removes the
	// Secret, a reinstalled host takes the name, and the old password no
	// longer works.
	if err := cs.CoreV1().Nodes().Delete(ctx, "edge-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(ctx, "edge-1", second); err != nil {
		t.Fatalf("a reinstalled host after the Node was deleted: %v", err)
	}
	if o := owner(); len(o) != 0 {
		t.Errorf("the claimed Secret keeps the deleted Node as its owner: %v", o)
	}
	if err := p.Verify(ctx, "edge-1", first); !errors.Is(err, ErrNodeNameClaimed) {
		t.Fatalf("the old password after the name was taken: %v, want ErrNodeNameClaimed", err)
	}
}

// A Node with no node password (one made by hand) is left alone.
func TestOwnNodePasswordWithoutSecret(t *testing.T) {
	cs := fake.NewClientset()
	if err := OwnNodePassword(context.Background(), cs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "manual", UID: "u"}}); err != nil {
		t.Fatal(err)
	}
}
