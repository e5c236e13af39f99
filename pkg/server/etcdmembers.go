package server

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/pkg/etcd"
)

// memberRemoval takes a server out of the etcd cluster when its Node is
// deleted (`kubectl delete node`), as k3s users remove a server: a
// member left behind would count against the quorum for ever.
type memberRemoval struct {
	client func() (kubernetes.Interface, error)
	etcd   func() etcd.Client
}

func (m *memberRemoval) Name() string { return "etcd-member-removal" }

func (m *memberRemoval) Start(ctx context.Context) (<-chan error, error) {
	client, err := m.client()
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	informer := factory.Core().V1().Nodes().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if node, ok := obj.(*corev1.Node); ok {
				go m.remove(ctx, node.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	factory.Start(ctx.Done())
	done := make(chan error)
	go func() {
		<-ctx.Done()
		factory.Shutdown()
		close(done)
	}()
	return done, nil
}

// remove removes the member named after node, if there is one: members
// are named after their server's node.
func (m *memberRemoval) remove(ctx context.Context, node string) {
	members, err := etcd.Members(ctx, m.etcd())
	if err != nil {
		logrus.Warnf("node %s was deleted, but the etcd members could not be listed to remove its member: %v", node, err)
		return
	}
	found := false
	for _, mem := range members {
		found = found || mem.Name == node
	}
	if !found {
		return
	}
	// Without quorum no member can be removed: keep trying until there is.
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := etcd.RemoveMember(rctx, m.etcd(), node)
		cancel()
		if err == nil {
			logrus.Infof("removed the etcd member of server %s, whose node was deleted", node)
			return
		}
		logrus.Warnf("node %s was deleted, but its etcd member could not be removed yet (%v); retrying in 30s", node, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}
