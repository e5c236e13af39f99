// Package etcd runs a server's member of the cluster's embedded etcd: it
// starts a new cluster, joins a running one or restarts from its data dir,
// and tells the apiserver how to reach it.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/pki"
)

const (
	DefaultClientPort = 2379
	DefaultPeerPort   = 2380
)

// readyTimeout bounds a start, joining included: a member that is not ready
// by then waits for something only a human can fix.
var readyTimeout = 2 * time.Minute

// etcd's defaults (100 ms, 1 s) suit dedicated machines; several members
// sharing a small, busy one miss heartbeats and keep electing leaders.
var (
	heartbeat       = 500 * time.Millisecond
	electionTimeout = 5 * time.Second
)

var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// Etcd runs one member of the cluster's etcd in-process.
type Etcd struct {
	// MemberName is unique per member: the node name.
	MemberName string
	// DataDir holds the member's data (layout.Server.EtcdDir).
	DataDir string
	PKI     *pki.EtcdPKI
	// AdvertiseIP is the node's address other members and servers reach.
	AdvertiseIP netip.Addr
	// ClientPort and PeerPort default to 2379 and 2380.
	ClientPort, PeerPort int
	// Join lists client URLs of running members of the cluster to join;
	// empty for a new cluster. A member with data restarts from it and
	// ignores Join.
	Join  []string
	Debug bool

	// Client is set once the member is ready.
	Client component.Output[Client]
}

func (e *Etcd) Name() string { return "etcd" }

func (e *Etcd) Start(ctx context.Context) (<-chan error, error) {
	cfg, logLevel, err := e.config()
	if err != nil {
		return nil, err
	}
	if err := e.prepareDataDir(); err != nil {
		return nil, err
	}
	// Checked before the membership changes: a member added but never
	// started costs the cluster a vote.
	if err := portsFree(cfg); err != nil {
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()

	switch {
	case wal.Exist(e.walDir()):
		logrus.Infof("etcd: member %s restarts from %s", e.MemberName, e.DataDir)
	case len(e.Join) == 0:
		logrus.Infof("etcd: member %s starts a new cluster", e.MemberName)
	default:
		logrus.Infof("etcd: member %s joins the cluster at %s", e.MemberName, strings.Join(e.Join, ", "))
		initial, err := e.join(startCtx, cfg.AdvertisePeerUrls[0].String())
		if err != nil {
			return nil, err
		}
		cfg.InitialCluster = initial
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}

	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %s: %w", e.MemberName, err)
	}
	// etcd logs its listeners' closing as errors with stack traces: noise
	// once skiff has said why it stops the member.
	quiet := func() {
		if !e.Debug {
			logLevel.SetLevel(zapcore.FatalLevel)
		}
	}
	// abort stops a member that may not be ready, which Close alone does
	// not: it waits for the client listeners, and they wait for the member
	// to be ready.
	abort := func() {
		quiet()
		srv.Server.HardStop()
		srv.Close()
	}
	select {
	case <-srv.Server.ReadyNotify():
	case <-srv.Server.StopNotify():
		cause := e.stopCause(srv)
		abort()
		return nil, cause
	case err := <-srv.Err():
		// A member that learns it was removed stops its server, and its
		// listeners fail with "server is stopping": the stop says why.
		select {
		case <-srv.Server.StopNotify():
			cause := e.stopCause(srv)
			abort()
			return nil, cause
		case <-time.After(5 * time.Second):
		}
		abort()
		return nil, fmt.Errorf("etcd member %s failed while starting: %w", e.MemberName, err)
	case <-startCtx.Done():
		cause := e.notReady(ctx, srv)
		abort()
		return nil, cause
	}
	// A learner refuses the apiserver's requests: the member is ready once
	// it votes.
	if err := e.promote(startCtx, srv); err != nil {
		abort()
		return nil, err
	}

	// Each apiserver talks to its own member: the member forwards what it
	// cannot answer, and the apiserver stops with it.
	local := cfg.ListenClientUrls[0]
	e.Client.Set(Client{
		Endpoints: []string{local.String()},
		CAFile:    e.PKI.ServerCACert,
		CertFile:  e.PKI.ClientCert,
		KeyFile:   e.PKI.ClientKey,
	})
	go e.watchQuorum(ctx, srv, currentQuorumTiming())
	done := make(chan error, 1)
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
			// Close hands the leadership, if this member has it, to another.
			quiet()
			srv.Close()
			return
		case <-srv.Server.StopNotify():
		case err := <-srv.Err():
			select {
			case <-srv.Server.StopNotify():
			default:
				abort()
				if err == nil {
					err = errors.New("a listener stopped serving")
				}
				done <- fmt.Errorf("etcd member %s: %w", e.MemberName, err)
				return
			}
		}
		done <- e.stopCause(srv)
		abort()
	}()
	return done, nil
}

func (e *Etcd) clientPort() int { return portOr(e.ClientPort, DefaultClientPort) }
func (e *Etcd) peerPort() int   { return portOr(e.PeerPort, DefaultPeerPort) }

func portOr(port, def int) int {
	if port == 0 {
		return def
	}
	return port
}

func clientURL(ip netip.Addr, port int) url.URL {
	return url.URL{Scheme: "https", Host: netip.AddrPortFrom(ip, uint16(port)).String()}
}

// walDir is where etcd keeps its log: etcd restarts from the data dir
// when it holds a WAL, and bootstraps anew otherwise.
func (e *Etcd) walDir() string { return walDir(e.DataDir) }

func walDir(dataDir string) string { return filepath.Join(dataDir, "member", "wal") }

// HasData reports whether dataDir holds a member's data, so that its
// start is a restart: no join, whatever the flags say.
func HasData(dataDir string) bool { return wal.Exist(walDir(dataDir)) }

func (e *Etcd) config() (*embed.Config, zap.AtomicLevel, error) {
	if e.MemberName == "" {
		return nil, zap.AtomicLevel{}, errors.New("etcd member has no name")
	}
	if !e.AdvertiseIP.IsValid() {
		return nil, zap.AtomicLevel{}, fmt.Errorf("etcd member %s has no address to advertise", e.MemberName)
	}
	for _, p := range []int{e.clientPort(), e.peerPort()} {
		if p < 1 || p > 65535 {
			return nil, zap.AtomicLevel{}, fmt.Errorf("etcd port %d is out of range", p)
		}
	}
	ip := e.AdvertiseIP.Unmap()
	cfg := embed.NewConfig()
	cfg.Name = e.MemberName
	cfg.Dir = e.DataDir

	advertise := clientURL(ip, e.clientPort())
	cfg.ListenClientUrls = []url.URL{clientURL(loopback, e.clientPort())}
	if ip != loopback {
		cfg.ListenClientUrls = append(cfg.ListenClientUrls, advertise)
	}
	cfg.AdvertiseClientUrls = []url.URL{advertise}
	peer := clientURL(ip, e.peerPort())
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	// Only a new cluster reads this; a join replaces it, a restart ignores it.
	cfg.InitialCluster = e.MemberName + "=" + peer.String()

	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile:       e.PKI.ServerCert,
		KeyFile:        e.PKI.ServerKey,
		TrustedCAFile:  e.PKI.ServerCACert,
		ClientCertAuth: true,
	}
	cfg.PeerTLSInfo = transport.TLSInfo{
		CertFile:       e.PKI.PeerCert,
		KeyFile:        e.PKI.PeerKey,
		TrustedCAFile:  e.PKI.PeerCACert,
		ClientCertAuth: true,
	}

	cfg.TickMs = uint(heartbeat.Milliseconds())
	cfg.ElectionMs = uint(electionTimeout.Milliseconds())
	// Auto-compaction stays off, etcd's default: the apiserver compacts
	// every five minutes.

	level := zap.NewAtomicLevelAt(zapcore.WarnLevel)
	if e.Debug {
		level.SetLevel(zapcore.InfoLevel)
	}
	logConfig := logutil.DefaultZapLoggerConfig
	logConfig.Level = level
	logConfig.OutputPaths = []string{"stderr"}
	logConfig.ErrorOutputPaths = []string{"stderr"}
	logger, err := logConfig.Build()
	if err != nil {
		return nil, level, fmt.Errorf("etcd logger: %w", err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)
	return cfg, level, nil
}

func (e *Etcd) prepareDataDir() error {
	if err := os.MkdirAll(e.DataDir, 0o700); err != nil {
		return fmt.Errorf("cannot create the etcd data dir (%w): make its parent writable for skiff or choose another --data-dir", err)
	}
	if err := os.Chmod(e.DataDir, 0o700); err != nil {
		return fmt.Errorf("cannot secure the etcd data dir (%w): give it to the user skiff runs as or choose another --data-dir", err)
	}
	probe, err := os.CreateTemp(e.DataDir, ".write-test-")
	if err != nil {
		return fmt.Errorf("cannot write to the etcd data dir (%w): make it writable for skiff or choose another --data-dir", err)
	}
	probe.Close()
	os.Remove(probe.Name())
	// A member dir without a WAL is a first start that stopped before etcd
	// wrote its log: etcd cannot restart from it, and a new start must not
	// pick up its half-made database.
	if !wal.Exist(e.walDir()) {
		if err := os.RemoveAll(filepath.Join(e.DataDir, "member")); err != nil {
			return fmt.Errorf("remove the etcd data of an unfinished first start: %w", err)
		}
	}
	return nil
}

// portsFree reports a listen address another program holds, which etcd's
// own error names less clearly.
func portsFree(cfg *embed.Config) error {
	for _, u := range append(cfg.ListenClientUrls, cfg.ListenPeerUrls...) {
		l, err := net.Listen("tcp", u.Host)
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return fmt.Errorf("etcd cannot listen on %s: another program uses that port; stop it (another etcd?) and start skiff again", u.Host)
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			return fmt.Errorf("etcd cannot listen on %s: the address is not this host's; advertise an address of this host", u.Host)
		case err != nil:
			return fmt.Errorf("etcd cannot listen on %s: %w", u.Host, err)
		}
		l.Close()
	}
	return nil
}

// promote makes a learner a voting member once it has caught up with the
// leader; a restart does it too, for a learner whose first start stopped
// before.
func (e *Etcd) promote(ctx context.Context, srv *embed.Etcd) error {
	var last error
	promoted := false
	for srv.Server.IsLearner() {
		// The leader learns that the learner caught up with its next
		// heartbeat; asking earlier gets a refusal, which etcd logs as an
		// error.
		select {
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("etcd member %s: stopped before it was ready: %w", e.MemberName, ctx.Err())
			}
			return fmt.Errorf("etcd member %s joined as a learner but the cluster did not make it a voting member within %s (%v); check that a quorum of the cluster's servers runs", e.MemberName, readyTimeout, last)
		case <-time.After(heartbeat):
		}
		if promoted {
			continue // until this member applies its promotion
		}
		// In-process, unlike over gRPC, a learner may ask: etcd forwards
		// the request to the leader.
		_, err := srv.Server.PromoteMember(ctx, uint64(srv.Server.MemberID()))
		promoted = err == nil || errors.Is(err, membership.ErrMemberNotLearner)
		last = err
	}
	return nil
}

// stopCause explains a member that stopped on its own.
func (e *Etcd) stopCause(srv *embed.Etcd) error {
	if srv.Server.Cluster().Member(srv.Server.MemberID()) == nil {
		return fmt.Errorf("etcd member %s was removed from the cluster; to join it again, delete %s and start skiff with --server", e.MemberName, e.DataDir)
	}
	return fmt.Errorf("etcd member %s stopped (its log above says why); if it was removed from the cluster, delete %s and start skiff with --server to join again", e.MemberName, e.DataDir)
}

// notReady explains a member that did not become ready in time: mostly,
// too few of the others run for a quorum.
func (e *Etcd) notReady(ctx context.Context, srv *embed.Etcd) error {
	if ctx.Err() != nil {
		return fmt.Errorf("etcd member %s: stopped before it was ready: %w", e.MemberName, ctx.Err())
	}
	voters := 0
	var unreachable []string
	for _, m := range srv.Server.Cluster().Members() {
		if m.IsLearner {
			continue
		}
		voters++
		if m.ID == srv.Server.MemberID() {
			continue
		}
		if err := reach(m.PeerURLs); err != nil {
			name := m.Name
			if name == "" {
				name = "(never started) " + m.ID.String()
			}
			unreachable = append(unreachable, fmt.Sprintf("%s at %s", name, strings.Join(m.PeerURLs, " ")))
		}
	}
	quorum := voters/2 + 1
	if len(unreachable) > 0 && voters-len(unreachable) < quorum {
		return fmt.Errorf("etcd member %s was not ready after %s: it cannot reach %s, so fewer than %d of the cluster's %d voting members run and it has no quorum; start skiff on those servers",
			e.MemberName, readyTimeout, strings.Join(unreachable, ", "), quorum, voters)
	}
	return fmt.Errorf("etcd member %s was not ready after %s although it reaches a quorum of the members; its log above says why", e.MemberName, readyTimeout)
}

// reach reports whether something listens at any of urls; nil if so.
func reach(urls []string) error {
	var err error
	for _, s := range urls {
		u, perr := url.Parse(s)
		if perr != nil {
			err = perr
			continue
		}
		conn, derr := net.DialTimeout("tcp", u.Host, 2*time.Second)
		if derr == nil {
			conn.Close()
			return nil
		}
		err = derr
	}
	if err == nil {
		err = errors.New("no URL")
	}
	return err
}
