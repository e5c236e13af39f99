package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-io/skiff/pkg/pki"
)

func TestMain(m *testing.M) {
	// etcd's own timing: a new single member elects itself within up to
	// ten heartbeats, which at skiff's would make this package slow.
	heartbeat, electionTimeout = 100*time.Millisecond, time.Second
	os.Exit(m.Run())
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newMember makes a member on 127.0.0.1 with its own ports and dirs; with
// a cluster, it gets that cluster's CAs as a joining server does.
func newMember(t *testing.T, name string, cluster *Etcd) *Etcd {
	t.Helper()
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if cluster != nil {
		files := pki.EtcdFiles(tlsDir)
		if err := os.MkdirAll(files.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, pair := range [][2]string{
			{cluster.PKI.ServerCACert, files.ServerCACert}, {cluster.PKI.ServerCAKey, files.ServerCAKey},
			{cluster.PKI.PeerCACert, files.PeerCACert}, {cluster.PKI.PeerCAKey, files.PeerCAKey},
		} {
			b, err := os.ReadFile(pair[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(pair[1], b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := pki.EnsureEtcd(tlsDir, pki.EtcdOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &Etcd{
		MemberName:  name,
		DataDir:     filepath.Join(dir, "db", "etcd"),
		PKI:         p,
		AdvertiseIP: loopback,
		ClientPort:  freePort(t),
		PeerPort:    freePort(t),
	}
}

func (e *Etcd) advertisedClientURL() string {
	u := clientURL(loopback, e.ClientPort)
	return u.String()
}

func (e *Etcd) advertisedPeerURL() string {
	u := clientURL(loopback, e.PeerPort)
	return u.String()
}

// running is a started member; stop ends it and returns its exit.
type running struct {
	stop func() error
	done <-chan error
}

func start(t *testing.T, e *Etcd) running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done, err := e.Start(ctx)
	if err != nil {
		cancel()
		t.Fatalf("start %s: %v", e.MemberName, err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop", e.MemberName)
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return running{stop: stop, done: done}
}

func connect(t *testing.T, c Client) *clientv3.Client {
	t.Helper()
	cli, err := c.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func get(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	resp, err := cli.Get(ctxTimeout(t, 10*time.Second), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func put(t *testing.T, cli *clientv3.Client, key, value string) {
	t.Helper()
	if _, err := cli.Put(ctxTimeout(t, 10*time.Second), key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// rejection is the member's verdict on a client presenting cert (none if
// certFile is empty): the TLS error it answers with, nil if it accepts.
func rejection(t *testing.T, e *Etcd, certFile, keyFile string) error {
	t.Helper()
	ca, err := os.ReadFile(e.PKI.ServerCACert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	tlsConfig := &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	conn, err := tls.Dial("tcp", netip.AddrPortFrom(loopback, uint16(e.ClientPort)).String(), tlsConfig)
	if err != nil {
		return err
	}
	defer conn.Close()
	// In TLS 1.3 the server checks the client's certificate after the
	// client's side of the handshake is done: its verdict comes with the
	// first read. An accepted client hears the server's HTTP/2 preface or,
	// at worst, nothing.
	if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err = conn.Read(make([]byte, 1)); err == nil {
		return nil
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil
	}
	return err
}

func TestMemberServesOverTLSAndKeepsItsDataAcrossRestarts(t *testing.T) {
	e := newMember(t, "server-1", nil)
	r := start(t, e)
	c := e.Client.Get()
	if want := []string{e.advertisedClientURL()}; !slices.Equal(c.Endpoints, want) {
		t.Errorf("client endpoints %v, want %v", c.Endpoints, want)
	}
	if st, err := os.Stat(e.DataDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v, mode %v", err, st.Mode().Perm())
	}
	put(t, connect(t, c), "greeting", "hello")

	if err := rejection(t, e, e.PKI.ClientCert, e.PKI.ClientKey); err != nil {
		t.Errorf("the client certificate is refused: %v", err)
	}
	if rejection(t, e, "", "") == nil {
		t.Error("a client without a certificate is accepted")
	}
	// The peer CA signs only members: its certificates are no clients.
	if rejection(t, e, e.PKI.PeerCert, e.PKI.PeerKey) == nil {
		t.Error("a client with a peer certificate is accepted")
	}

	if err := r.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	start(t, e)
	if got := get(t, connect(t, e.Client.Get()), "greeting"); got != "hello" {
		t.Fatalf("after a restart the key holds %q, want hello", got)
	}
}

func memberNames(t *testing.T, c Client) []string {
	t.Helper()
	members, err := Members(ctxTimeout(t, 10*time.Second), c)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range members {
		if !m.Started || m.Learner {
			t.Errorf("member %q (%x): started %v, learner %v", m.Name, m.ID, m.Started, m.Learner)
		}
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

func TestMembersJoinAndLeave(t *testing.T) {
	first := newMember(t, "server-1", nil)
	r1 := start(t, first)
	firstClient := connect(t, first.Client.Get())
	put(t, firstClient, "written-before", "the join")

	second := newMember(t, "server-2", first)
	second.Join = []string{first.advertisedClientURL()}
	r := start(t, second)
	if got := get(t, connect(t, second.Client.Get()), "written-before"); got != "the join" {
		t.Fatalf("the joined member reads %q, want the first member's write", got)
	}
	if got := memberNames(t, first.Client.Get()); !slices.Equal(got, []string{"server-1", "server-2"}) {
		t.Fatalf("members %v", got)
	}

	// etcd removes a voting member only once the others have been
	// connected for five seconds.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		err := RemoveMember(ctxTimeout(t, 10*time.Second), first.Client.Get(), "server-2")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if got := memberNames(t, first.Client.Get()); !slices.Equal(got, []string{"server-1"}) {
		t.Fatalf("members after removing server-2: %v", got)
	}
	select {
	case err := <-r.done:
		if err == nil || !strings.Contains(err.Error(), "removed") {
			t.Errorf("a removed member exits with %v, want an error that says so", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the removed member still runs")
	}
	r.stop()
	if err := RemoveMember(ctxTimeout(t, 10*time.Second), first.Client.Get(), "server-2"); err != nil {
		t.Errorf("removing a removed member: %v", err)
	}

	// Joining again after the host lost its data, as if an earlier join
	// stopped between adding the member and starting it: the added member
	// is reused.
	if err := os.RemoveAll(second.DataDir); err != nil {
		t.Fatal(err)
	}
	if _, err := firstClient.MemberAddAsLearner(ctxTimeout(t, 10*time.Second), []string{second.advertisedPeerURL()}); err != nil {
		t.Fatal(err)
	}
	again := &Etcd{MemberName: second.MemberName, DataDir: second.DataDir, PKI: second.PKI, AdvertiseIP: second.AdvertiseIP,
		ClientPort: second.ClientPort, PeerPort: second.PeerPort, Join: second.Join}
	r2 := start(t, again)
	if got := get(t, connect(t, again.Client.Get()), "written-before"); got != "the join" {
		t.Fatalf("the rejoined member reads %q", got)
	}
	if got := memberNames(t, first.Client.Get()); !slices.Equal(got, []string{"server-1", "server-2"}) {
		t.Fatalf("members after rejoining: %v", got)
	}
	// server-1, the leader, first: stopped last, it would try to hand its
	// leadership to the member just stopped, and wait for that to time out.
	if err := r1.stop(); err != nil {
		t.Error(err)
	}
	if err := r2.stop(); err != nil {
		t.Error(err)
	}
}

func TestQuorumLossIsExplained(t *testing.T) {
	first := newMember(t, "server-1", nil)
	r1 := start(t, first)
	second := newMember(t, "server-2", first)
	second.Join = []string{first.advertisedClientURL()}
	r2 := start(t, second)
	r2.stop()
	r1.stop()

	defer func(d time.Duration) { readyTimeout = d }(readyTimeout)
	readyTimeout = 3 * time.Second
	_, err := first.Start(context.Background())
	if err == nil {
		t.Fatal("a member without quorum became ready")
	}
	t.Logf("start without quorum: %v", err)
	if msg := err.Error(); !strings.Contains(msg, "server-2") || !strings.Contains(msg, "quorum") {
		t.Errorf("error does not name the missing member and the lost quorum: %v", err)
	}
}

func TestQuorumLostWhileRunningIsReported(t *testing.T) {
	defer func(every, after time.Duration) { quorumCheckEvery, noLeaderFor = every, after }(quorumCheckEvery, noLeaderFor)
	quorumCheckEvery, noLeaderFor = 200*time.Millisecond, 2*time.Second
	logs := logtest.NewGlobal()
	defer logs.Reset()

	first := newMember(t, "server-1", nil)
	r1 := start(t, first)
	second := newMember(t, "server-2", first)
	second.Join = []string{first.advertisedClientURL()}
	r2 := start(t, second)
	// server-1 stopped: server-2 alone is not a majority of two.
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	var report string
	for deadline := time.Now().Add(20 * time.Second); report == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, e := range logs.AllEntries() {
			if strings.Contains(e.Message, "has had no leader") {
				report = e.Message
			}
		}
	}
	if report == "" {
		t.Fatal("a member without a leader for longer than noLeaderFor logged nothing")
	}
	t.Logf("report: %s", report)
	for _, want := range []string{"member server-2", "unreachable: server-1 (https://", "reachable: server-2", "--cluster-reset"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report does not say %q", want)
		}
	}
	_ = r2.stop()
}

func TestPortInUseIsExplained(t *testing.T) {
	e := newMember(t, "server-1", nil)
	l, err := net.Listen("tcp", netip.AddrPortFrom(loopback, uint16(e.PeerPort)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = e.Start(context.Background())
	t.Logf("start with a busy port: %v", err)
	if err == nil || !strings.Contains(err.Error(), "another program uses that port") {
		t.Fatalf("start with a busy peer port: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("waited for the timeout instead of failing at once")
	}
}

func TestUnreachableJoinIsExplained(t *testing.T) {
	e := newMember(t, "server-2", nil)
	e.Join = []string{"https://" + netip.AddrPortFrom(loopback, uint16(freePort(t))).String()}
	defer func(d time.Duration) { readyTimeout = d }(readyTimeout)
	readyTimeout = 3 * time.Second
	_, err := e.Start(context.Background())
	t.Logf("join nothing: %v", err)
	if err == nil || !strings.Contains(err.Error(), "nothing answers at "+e.Join[0]) {
		t.Fatalf("joining where nothing listens: %v", err)
	}
}
