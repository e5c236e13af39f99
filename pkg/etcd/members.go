package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Client is how to reach etcd: what the apiserver's --etcd-* flags take.
type Client struct {
	Endpoints                 []string
	CAFile, CertFile, KeyFile string
}

// Connect makes a client; it dials lazily, so errors of reaching the
// endpoints come with the first request.
func (c Client) Connect() (*clientv3.Client, error) {
	tlsConfig, err := (&transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd client TLS: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: c.Endpoints,
		TLS:       tlsConfig,
		// Its retries would log a warning each; callers get the error.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(c.Endpoints, ", "), err)
	}
	return cli, nil
}

// Member is one member of the etcd cluster.
type Member struct {
	ID   uint64
	Name string
	// Started is false for a member that was added but never ran; it has
	// no name yet.
	Started bool
	// Learner is true until the member has caught up and can vote: its
	// server has not finished joining.
	Learner              bool
	PeerURLs, ClientURLs []string
}

func memberOf(m *etcdserverpb.Member) Member {
	return Member{ID: m.ID, Name: m.Name, Started: m.Name != "", Learner: m.IsLearner, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs}
}

// Members lists the cluster's members.
func Members(ctx context.Context, c Client) ([]Member, error) {
	cli, err := c.Connect()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members at %s: %w", strings.Join(c.Endpoints, ", "), err)
	}
	out := make([]Member, 0, len(resp.Members))
	for _, m := range resp.Members {
		out = append(out, memberOf(m))
	}
	return out, nil
}

// RemoveMember removes the member named name from the cluster; a name no
// member has is already removed.
func RemoveMember(ctx context.Context, c Client, name string) error {
	if name == "" {
		return errors.New("remove etcd member: no name given")
	}
	cli, err := c.Connect()
	if err != nil {
		return err
	}
	defer cli.Close()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("remove etcd member %s: list members: %w", name, err)
	}
	i := slices.IndexFunc(resp.Members, func(m *etcdserverpb.Member) bool { return m.Name == name })
	if i < 0 {
		return nil
	}
	if _, err := cli.MemberRemove(ctx, resp.Members[i].ID); err != nil {
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			return nil
		}
		if quorumRisk(err) {
			return fmt.Errorf("etcd refuses to remove member %s for now (%w): the members left must form a quorum and have been connected for a few seconds; start any stopped servers and try again", name, err)
		}
		return fmt.Errorf("remove etcd member %s: %w", name, err)
	}
	return nil
}

// quorumRisk tells etcd's refusals of a membership change that would
// leave too few running members, which waiting can cure.
func quorumRisk(err error) bool {
	return errors.Is(err, rpctypes.ErrUnhealthy) || errors.Is(err, rpctypes.ErrMemberNotEnoughStarted)
}

// permanentError stops the join's retries: waiting cannot fix it.
type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

// join makes this host a member of the cluster at e.Join and returns the
// initial cluster to start it with. It retries until ctx ends: the other
// servers may be starting too, and etcd refuses a new member while another
// is still a learner and for a few seconds after one joined.
func (e *Etcd) join(ctx context.Context, peerURL string) (string, error) {
	c := Client{Endpoints: e.Join, CAFile: e.PKI.ServerCACert, CertFile: e.PKI.ClientCert, KeyFile: e.PKI.ClientKey}
	cli, err := c.Connect()
	if err != nil {
		return "", err
	}
	defer cli.Close()
	for warned := false; ; warned = true {
		initial, err := e.joinOnce(ctx, cli, peerURL)
		if err == nil {
			return initial, nil
		}
		if errors.As(err, new(permanentError)) {
			return "", err
		}
		if !warned {
			logrus.Warnf("etcd: member %s cannot join yet (%v); retrying for up to %s", e.MemberName, err, readyTimeout)
		}
		select {
		case <-ctx.Done():
			return "", e.joinFailed(ctx, err)
		case <-time.After(2 * time.Second):
		}
	}
}

func (e *Etcd) joinOnce(ctx context.Context, cli *clientv3.Client, peerURL string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("list members: %w", err)
	}
	members := list.Members
	// A started member of this name, while this member's data dir is
	// empty, is this host before it was reinstalled: it must go before
	// the host joins again.
	if i := slices.IndexFunc(members, func(m *etcdserverpb.Member) bool { return m.Name == e.MemberName }); i >= 0 {
		logrus.Warnf("etcd: removing member %s (%x), this host's before it lost its etcd data", e.MemberName, members[i].ID)
		if _, err := cli.MemberRemove(ctx, members[i].ID); err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
			return "", fmt.Errorf("remove the former member %s: %w", e.MemberName, err)
		}
		if list, err = cli.MemberList(ctx); err != nil {
			return "", fmt.Errorf("list members: %w", err)
		}
		members = list.Members
	}

	var self uint64
	for _, m := range members {
		if !slices.Contains(m.PeerURLs, peerURL) {
			continue
		}
		if m.Name != "" {
			return "", permanentError{fmt.Errorf("etcd member %s already has this host's peer address %s: if it was this host under another node name, remove that member; otherwise give this server an address of its own", m.Name, peerURL)}
		}
		// Added by an earlier start that stopped before the member ran.
		self = m.ID
	}
	if self == 0 {
		// As a learner, the new member has no vote until it has caught up
		// and Start promotes it: a voting member that is slow to start, or
		// never does, would leave a cluster of one without a quorum.
		resp, err := cli.MemberAddAsLearner(ctx, []string{peerURL})
		if err != nil {
			return "", fmt.Errorf("add member: %w", err)
		}
		self, members = resp.Member.ID, resp.Members
	}
	return initialCluster(members, self, e.MemberName), nil
}

// initialCluster lists every member, as etcd insists: its count must match
// the cluster's. A member that never started has no name; any distinct one
// does.
func initialCluster(members []*etcdserverpb.Member, self uint64, selfName string) string {
	var pairs []string
	for _, m := range members {
		name := m.Name
		switch {
		case m.ID == self:
			name = selfName
		case name == "":
			name = fmt.Sprintf("unstarted-%x", m.ID)
		}
		for _, u := range m.PeerURLs {
			pairs = append(pairs, name+"="+u)
		}
	}
	return strings.Join(pairs, ",")
}

// joinFailed explains a join that ran out of time.
func (e *Etcd) joinFailed(ctx context.Context, last error) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("etcd member %s: stopped while joining: %w", e.MemberName, ctx.Err())
	}
	if reach(e.Join) != nil {
		return fmt.Errorf("etcd member %s cannot join: nothing answers at %s; start the server there or let this host reach its etcd port", e.MemberName, strings.Join(e.Join, ", "))
	}
	if errors.Is(last, rpctypes.ErrTooManyLearners) {
		return fmt.Errorf("etcd member %s cannot join: another server's join is unfinished, its member still a learner (%v); start that server, or remove its member from the cluster", e.MemberName, last)
	}
	if quorumRisk(last) {
		return fmt.Errorf("etcd member %s cannot join: the cluster refuses new members while too few of its members run (%v); start the stopped servers first", e.MemberName, last)
	}
	return fmt.Errorf("etcd member %s could not join the cluster at %s within %s (%v); check that a quorum of its servers runs", e.MemberName, strings.Join(e.Join, ", "), readyTimeout, last)
}
