package etcd

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/server/v3/embed"
)

// Quorum loss shows to users as an apiserver that stops answering; the
// member's log must say which members it cannot reach and what to do.
var (
	quorumCheckEvery = 5 * time.Second
	// noLeaderFor is how long a member may be without a leader before it
	// is reported: an election takes a few seconds (5 s timeout).
	noLeaderFor = 30 * time.Second
	// reportAgainEvery repeats the report while the quorum stays lost.
	reportAgainEvery = 5 * time.Minute
)

// quorumTiming is the watch's timing, read once when the member starts.
type quorumTiming struct {
	every, noLeaderFor, reportAgainEvery time.Duration
}

func currentQuorumTiming() quorumTiming {
	return quorumTiming{every: quorumCheckEvery, noLeaderFor: noLeaderFor, reportAgainEvery: reportAgainEvery}
}

// watchQuorum logs, while this member has no leader, which members it
// cannot reach and how to recover, until ctx ends.
func (e *Etcd) watchQuorum(ctx context.Context, srv *embed.Etcd, timing quorumTiming) {
	var since, reported time.Time
	tick := time.NewTicker(timing.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-srv.Server.StopNotify():
			return
		case <-tick.C:
		}
		if srv.Server.Leader() != 0 {
			if !reported.IsZero() {
				logrus.Infof("etcd: member %s has a leader again, after %s without one", e.MemberName, time.Since(since).Round(time.Second))
			}
			since, reported = time.Time{}, time.Time{}
			continue
		}
		now := time.Now()
		if since.IsZero() {
			since = now
		}
		if now.Sub(since) < timing.noLeaderFor || (!reported.IsZero() && now.Sub(reported) < timing.reportAgainEvery) {
			continue
		}
		reported = now
		var down, up []string
		for _, m := range srv.Server.Cluster().Members() {
			name := m.Name
			if name == "" {
				name = "(not started)"
			}
			if m.ID == srv.Server.MemberID() || reachable(m.PeerURLs) {
				up = append(up, name)
			} else {
				down = append(down, fmt.Sprintf("%s (%s)", name, strings.Join(m.PeerURLs, ", ")))
			}
		}
		logrus.Warnf("etcd: member %s has had no leader for %s, so the cluster cannot write or read: it needs a majority of its %d members; unreachable: %s; reachable: %s. Start the servers that are down; if they are gone for good, run skiff server --cluster-reset on this one to make it a cluster of one keeping its data, then rejoin new servers with --server",
			e.MemberName, now.Sub(since).Round(time.Second), len(down)+len(up), listOrNone(down), listOrNone(up))
	}
}

// reachable reports whether any of a member's peer URLs accepts a TCP
// connection: enough to tell a host that is down from one that is up.
func reachable(peerURLs []string) bool {
	for _, u := range peerURLs {
		p, err := url.Parse(u)
		if err != nil {
			continue
		}
		c, err := net.DialTimeout("tcp", p.Host, 2*time.Second)
		if err == nil {
			c.Close()
			return true
		}
	}
	return false
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
