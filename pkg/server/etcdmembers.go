package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-io/skiff/pkg/etcd"
	"github.com/skiff-io/skiff/pkg/kubeclient"
)

// etcdMemberFinalizer holds a server's Node until its etcd member is
// removed: a deleted Node ends that server's process (kube-proxy exits
// when its Node goes), possibly before any removal ran, and the finalizer
// lets whichever server leads next finish the job.
const etcdMemberFinalizer = "skiff.io/etcd-member"

// memberRemoval takes a server out of the etcd cluster when its Node is
// deleted (`kubectl delete node`), as k3s users remove a server: a member
// left behind would count against the quorum for ever. Members are named
// after their server's node.
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
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 30*time.Second))
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { enqueueNode(queue, obj) },
		UpdateFunc: func(_, obj any) { enqueueNode(queue, obj) },
	}); err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	// The work is queued by the handler above; this adds the watch-error
	// logging every skiff informer has.
	if err := kubeclient.OnChange("nodes", informer, func() {}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	done := make(chan error)
	go func() {
		defer close(done)
		<-ctx.Done()
		queue.ShutDown()
		factory.Shutdown()
	}()
	go func() {
		for {
			name, quit := queue.Get()
			if quit {
				return
			}
			if err := m.reconcile(ctx, client, informer.GetStore(), name); err != nil {
				logrus.Warnf("etcd member of node %s: %v; retrying", name, err)
				queue.AddRateLimited(name)
			} else {
				queue.Forget(name)
			}
			queue.Done(name)
		}
	}()
	return done, nil
}

func enqueueNode(queue workqueue.TypedRateLimitingInterface[string], obj any) {
	if node, ok := obj.(*corev1.Node); ok {
		queue.Add(node.Name)
	}
}

// reconcile puts the finalizer on the Node of every etcd member and, once
// such a Node is being deleted, removes the member, then the finalizer.
func (m *memberRemoval) reconcile(ctx context.Context, client kubernetes.Interface, store cache.Store, name string) error {
	obj, exists, err := store.GetByKey(name)
	if err != nil || !exists {
		return err
	}
	node := obj.(*corev1.Node)
	held := slices.Contains(node.Finalizers, etcdMemberFinalizer)
	if node.DeletionTimestamp == nil && held {
		return nil
	}
	if node.DeletionTimestamp != nil && !held {
		return nil
	}
	members, err := etcd.Members(ctx, m.etcd())
	if err != nil {
		return fmt.Errorf("list the etcd members: %w", err)
	}
	member := slices.ContainsFunc(members, func(mem etcd.Member) bool { return mem.Name == name })

	update := node.DeepCopy()
	if node.DeletionTimestamp == nil {
		if !member {
			return nil
		}
		update.Finalizers = append(update.Finalizers, etcdMemberFinalizer)
	} else {
		if member {
			// Without quorum no member can be removed: the error retries.
			if err := etcd.RemoveMember(ctx, m.etcd(), name); err != nil {
				return fmt.Errorf("remove it: %w", err)
			}
			logrus.Infof("removed the etcd member of server %s, whose node was deleted", name)
		}
		update.Finalizers = slices.DeleteFunc(update.Finalizers, func(f string) bool { return f == etcdMemberFinalizer })
	}
	if _, err := client.CoreV1().Nodes().Update(ctx, update, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update its node's finalizers: %w", err)
	}
	return nil
}
