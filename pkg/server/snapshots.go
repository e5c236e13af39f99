package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/etcd"
	"github.com/skiff-io/skiff/pkg/pki"
)

// scheduledSnapshots is the component that saves this server's snapshots
// of its etcd member, nil when there is none or they are disabled. Every
// server takes its own, as in k3s: any survivor has recent ones.
func scheduledSnapshots(cfg *config.CompletedServer, st *store) component.Component {
	if st.member == nil || cfg.EtcdSnapshots.Disabled {
		return nil
	}
	return &etcdSnapshots{opts: cfg.EtcdSnapshots, node: cfg.NodeName, member: st.member, now: time.Now}
}

type etcdSnapshots struct {
	opts   config.EtcdSnapshots
	node   string
	member *etcd.Etcd
	now    func() time.Time
}

func (s *etcdSnapshots) Name() string { return "etcd snapshots" }

func (s *etcdSnapshots) Start(ctx context.Context) (<-chan error, error) {
	done := make(chan error)
	kept := "all kept"
	if s.opts.Retention > 0 {
		kept = fmt.Sprintf("the newest %d kept", s.opts.Retention)
	}
	logrus.Infof("etcd snapshots: saved on the schedule %q into %s, %s", s.opts.Cron, s.opts.Dir, kept)
	go func() {
		defer close(done)
		for {
			next := s.opts.Schedule.Next(s.now())
			if next.IsZero() {
				logrus.Warnf("etcd snapshots: the schedule %q never comes round; no snapshots will be taken", s.opts.Cron)
				<-ctx.Done()
				return
			}
			timer := time.NewTimer(time.Until(next))
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			s.saveOnce(ctx)
		}
	}()
	return done, nil
}

// saveOnce saves a snapshot and prunes the old ones. A failure is logged
// and retried at the next time of the schedule: the server itself is fine.
func (s *etcdSnapshots) saveOnce(ctx context.Context) {
	snap, err := etcd.SaveSnapshot(ctx, s.member.Client.Get(), s.opts.Dir, etcd.ScheduledSnapshotName, s.node, s.now())
	if err != nil {
		if ctx.Err() == nil {
			logrus.Warnf("etcd snapshots: %v", err)
		}
		return
	}
	logrus.Infof("etcd snapshots: saved %s (%d bytes)", snap.Path, snap.Size)
	removed, err := etcd.PruneSnapshots(s.opts.Dir, etcd.ScheduledSnapshotName, s.node, s.opts.Retention)
	for _, r := range removed {
		logrus.Infof("etcd snapshots: deleted %s, beyond the %d kept", r.Name, s.opts.Retention)
	}
	if err != nil {
		logrus.Warnf("etcd snapshots: %v", err)
	}
}

// resetCluster carries out --cluster-reset: the server's etcd member
// becomes a cluster of one, from its data or from a snapshot, and the
// server stops, so that a start with the flag still set cannot undo what
// was written since.
func resetCluster(ctx context.Context, cfg *config.CompletedServer) error {
	l := cfg.Paths.Server
	if _, err := os.Stat(l.StateDB); err == nil && !etcd.HasData(l.EtcdDir) && cfg.ClusterResetRestorePath == "" {
		return fmt.Errorf("this server keeps its data in SQLite (%s), not in etcd, so there is no etcd cluster to reset; to go back to a snapshot, use \"skiff datastore restore\"", l.StateDB)
	}
	opts := pki.EtcdOptions{DNSNames: []string{cfg.NodeName}}
	for _, ip := range append(cfg.NodeIPs, cfg.AdvertiseAddress) {
		opts.IPs = append(opts.IPs, net.IP(ip.AsSlice()))
	}
	etcdPKI, err := pki.EnsureEtcd(l.TLSDir, opts)
	if err != nil {
		return fmt.Errorf("prepare etcd certificates in %s: %w", l.TLSDir, err)
	}
	member := &etcd.Etcd{
		MemberName:  cfg.NodeName,
		DataDir:     l.EtcdDir,
		PKI:         etcdPKI,
		AdvertiseIP: cfg.AdvertiseAddress,
		Debug:       cfg.Debug,
	}
	if cfg.ClusterResetRestorePath != "" {
		logrus.Infof("etcd: restoring the snapshot %s for member %s", cfg.ClusterResetRestorePath, cfg.NodeName)
	}
	aside, err := member.Reset(ctx, cfg.ClusterResetRestorePath, time.Now())
	if aside != "" {
		logrus.Infof("etcd: the former data of member %s is kept in %s", cfg.NodeName, aside)
	}
	if err != nil {
		return err
	}
	url := "https://" + netip.AddrPortFrom(cfg.AdvertiseAddress, uint16(cfg.HTTPSPort)).String()
	if cfg.ClusterResetRestorePath != "" {
		logrus.Infof("etcd: restored %s; member %s is now the only member of a new etcd cluster", cfg.ClusterResetRestorePath, cfg.NodeName)
	} else {
		logrus.Infof("etcd: member %s is now the only member of a new etcd cluster, with the data it had", cfg.NodeName)
	}
	logrus.Warnf("etcd: the other servers are no longer members: on each, stop skiff, move its <data-dir>/server/db/etcd away and start it with --server %s --token <the cluster token>", url)
	if _, err := os.Stat(pki.ServerFiles(l.TLSDir).ServerCACert); err != nil {
		logrus.Warnf("this data dir has no cluster CA yet: give the next start the cluster's --token, so that it takes the CAs and keys the snapshot holds")
	}
	logrus.Info("cluster reset done; start skiff again without --cluster-reset" + restoreFlagHint(cfg))
	return nil
}

func restoreFlagHint(cfg *config.CompletedServer) string {
	if cfg.ClusterResetRestorePath == "" {
		return ""
	}
	return " and --cluster-reset-restore-path"
}
