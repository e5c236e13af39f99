package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-io/skiff/pkg/bootstrap"
	"github.com/skiff-io/skiff/pkg/component"
	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/controlplane/flags"
	"github.com/skiff-io/skiff/pkg/datastore"
	"github.com/skiff-io/skiff/pkg/etcd"
	"github.com/skiff-io/skiff/pkg/layout"
	"github.com/skiff-io/skiff/pkg/pki"
	"github.com/skiff-io/skiff/pkg/secretsencrypt"
)

// identityFile is the shared file that tells clusters apart, as the
// material names it: a data dir whose server CA differs from the
// cluster's belongs to another cluster.
func identityFile(l layout.Server) string {
	return relToServer(l, pki.ServerFiles(l.TLSDir).ServerCACert)
}

// relToServer names a file under the server dir as the material does:
// slash-separated and relative to it. The layout derives every path from
// the data dir, so the two always relate.
func relToServer(l layout.Server, path string) string {
	rel, _ := filepath.Rel(l.Dir, path)
	return filepath.ToSlash(rel)
}

// store is the server's datastore, started before the rest of the server
// because, with several servers, it holds the material the rest is
// configured from.
type store struct {
	// component takes the running datastore's place in the graph.
	component component.Component
	// stop stops it when the graph never runs.
	stop func()
	// backend is how the apiserver reaches it.
	backend flags.Etcd
	// member is the embedded etcd member, nil on kine.
	member *etcd.Etcd
}

// openStore starts the datastore the configuration names. A server
// joining an embedded etcd cluster first receives the cluster's shared
// material from the server it joins: its member's certificates must be
// signed by the cluster's etcd CAs.
func openStore(ctx context.Context, cfg *config.CompletedServer) (*store, error) {
	l := cfg.Paths.Server
	ds := cfg.Datastore
	if ds.Kind != config.EmbeddedEtcd {
		kine := &datastore.Datastore{
			Endpoint: ds.Endpoint,
			CAFile:   ds.CAFile, CertFile: ds.CertFile, KeyFile: ds.KeyFile,
			DBDir: l.DBDir, StateDB: l.StateDB, Socket: l.KineSocket,
		}
		c, stop, err := component.Early(ctx, kine)
		if err != nil {
			return nil, err
		}
		return &store{component: c, stop: stop, backend: flags.Etcd{Servers: kine.ETCD.Get().Endpoints}}, nil
	}

	member := etcd.HasData(l.EtcdDir)
	if _, err := os.Stat(l.StateDB); err == nil && !member {
		return nil, fmt.Errorf("%s holds this server's SQLite datastore, and --cluster-init or --server would start an empty etcd cluster beside it; drop those flags to keep using SQLite, or move the data dir away to start a new cluster", l.StateDB)
	}
	var joinURLs []string
	if ds.JoinURL != "" && !member {
		urls, err := receiveMaterial(ctx, cfg)
		if err != nil {
			return nil, err
		}
		joinURLs = urls
	}
	opts := pki.EtcdOptions{DNSNames: []string{cfg.NodeName}}
	for _, ip := range append(cfg.NodeIPs, cfg.AdvertiseAddress) {
		opts.IPs = append(opts.IPs, net.IP(ip.AsSlice()))
	}
	etcdPKI, err := pki.EnsureEtcd(l.TLSDir, opts)
	if err != nil {
		return nil, fmt.Errorf("prepare etcd certificates in %s: %w", l.TLSDir, err)
	}
	e := &etcd.Etcd{
		MemberName:  cfg.NodeName,
		DataDir:     l.EtcdDir,
		PKI:         etcdPKI,
		AdvertiseIP: cfg.AdvertiseAddress,
		Join:        joinURLs,
		Debug:       cfg.Debug,
	}
	c, stop, err := component.Early(ctx, e)
	if err != nil {
		return nil, err
	}
	if err := etcd.ClearResetMarker(l.EtcdDir); err != nil {
		logrus.Warnf("etcd: %v", err)
	}
	client := e.Client.Get()
	return &store{
		component: c,
		stop:      stop,
		member:    e,
		backend:   flags.Etcd{Servers: client.Endpoints, CAFile: client.CAFile, CertFile: client.CertFile, KeyFile: client.KeyFile},
	}, nil
}

// receiveMaterial asks the server being joined for the cluster's shared
// material, writes it into the data dir, and returns the client URLs of
// the cluster's etcd members.
func receiveMaterial(ctx context.Context, cfg *config.CompletedServer) ([]string, error) {
	tok, err := pki.ParseToken(cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("invalid --token: %w", err)
	}
	if tok.Username == pki.AgentTokenUser {
		return nil, errors.New("the --token is an agent-only token: it joins agents, not servers; pass the cluster token (skiff token on the server)")
	}
	var resp *bootstrap.Response
	var material bootstrap.Material
	for {
		resp, material, err = bootstrap.Fetch(ctx, cfg.Datastore.JoinURL, tok)
		if err == nil {
			break
		}
		if !bootstrap.Retryable(err) {
			return nil, err
		}
		logrus.Warnf("waiting for the server to join: %v", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
	if resp.Datastore.Kind != bootstrap.KindEtcd {
		return nil, fmt.Errorf("the server at %s keeps its data in an external datastore; give this server the same --datastore-endpoint and --token instead of --server", cfg.Datastore.JoinURL)
	}
	if err := material.Apply(cfg.Paths.Server.Dir, identityFile(cfg.Paths.Server)); err != nil {
		return nil, err
	}
	logrus.Infof("received the cluster's certificates and keys from %s", cfg.Datastore.JoinURL)
	return resp.Datastore.EtcdClientURLs, nil
}

// settleMaterial makes the data dir hold the cluster's shared material:
// the datastore's when it has some, else this server's (made now if
// missing), which it then stores for the servers to come. It returns the
// token secret the material is sealed with, and, when it was generated,
// that the token file must take it.
func (s *store) settleMaterial(ctx context.Context, cfg *config.CompletedServer) (secret string, generated bool, err error) {
	l := cfg.Paths.Server
	secret, generated, err = clusterSecret(cfg)
	if err != nil {
		return "", false, err
	}
	client, err := s.client()
	if err != nil {
		return "", false, err
	}
	defer client.Close()
	shared := sharedFiles(l)
	identity := identityFile(l)

	stored, found, err := bootstrap.Load(ctx, client, secret)
	if err != nil {
		return "", false, err
	}
	if found {
		return secret, generated, missingFrom(stored, l.Dir, identity).Apply(l.Dir, identity)
	}

	_, statErr := os.Stat(pki.ServerFiles(l.TLSDir).ServerCACert)
	madeNow := errors.Is(statErr, os.ErrNotExist)
	// The CAs and keys are made here, before anything uses them, so that
	// the ones stored are the ones every server uses.
	if _, err := pki.EnsureServer(l.TLSDir, serverSANs(cfg)); err != nil {
		return "", false, fmt.Errorf("prepare certificates in %s: %w", l.TLSDir, err)
	}
	if _, _, err := (secretsencrypt.Files{Dir: l.CredDir}).Ensure(cfg.SecretsEncryption); err != nil {
		return "", false, err
	}
	mine, err := bootstrap.Collect(l.Dir, shared)
	if err != nil {
		return "", false, err
	}
	winner, created, err := bootstrap.Save(ctx, client, secret, mine)
	if err != nil {
		return "", false, err
	}
	if created {
		logrus.Info("stored the cluster's certificates and keys in the datastore, sealed with the token, for more servers to join")
		return secret, generated, nil
	}
	// Another server started at the same moment and stored its own first.
	if !madeNow {
		return "", false, winner.Apply(l.Dir, identity)
	}
	for _, rel := range shared {
		if err := os.Remove(filepath.Join(l.Dir, filepath.FromSlash(rel))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", false, fmt.Errorf("replace this server's new certificates with the cluster's: %w", err)
		}
	}
	logrus.Info("another server stored the cluster's certificates first; using them")
	return secret, generated, winner.Apply(l.Dir, identity)
}

// missingFrom is the part of m that dir lacks, and the identity file,
// which Apply checks. A server keeps its own copy of a file it has: the
// stored one can be older (encryption keys rotated on this server).
func missingFrom(m bootstrap.Material, dir, identity string) bootstrap.Material {
	out := bootstrap.Material{}
	for rel, b := range m {
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel)))
		if rel == identity || errors.Is(err, os.ErrNotExist) {
			out[rel] = b
		}
	}
	return out
}

// sharedFiles are the files every server of a cluster must hold the same,
// relative to the server dir: the CAs and keys that sign and verify
// everyone's credentials, and the Secrets encryption keys. Tokens are not
// among them: each server is given the token, and the material is sealed
// with it.
func sharedFiles(l layout.Server) []string {
	p := pki.ServerFiles(l.TLSDir)
	e := pki.EtcdFiles(l.TLSDir)
	abs := []string{
		p.ServerCACert, p.ServerCAKey,
		p.KubeletServingCACert, p.KubeletServingCAKey, p.LegacyKubeletServingMarker,
		p.ClientCACert, p.ClientCAKey,
		p.RequestHeaderCACert, p.RequestHeaderCAKey,
		p.AddonServingCACert, p.AddonServingCAKey,
		p.ServiceAccountKey,
		e.ServerCACert, e.ServerCAKey, e.PeerCACert, e.PeerCAKey,
	}
	abs = append(abs, secretsencrypt.Files{Dir: l.CredDir}.Paths()...)
	rel := make([]string, len(abs))
	for i, a := range abs {
		rel[i] = relToServer(l, a)
	}
	return rel
}

// clusterSecret is the secret the shared material is sealed with: the
// given token's, else the stored token's, else a new one, which the token
// file then takes.
func clusterSecret(cfg *config.CompletedServer) (secret string, generated bool, err error) {
	given := cfg.Token
	if given == "" {
		stored, err := os.ReadFile(cfg.Paths.Server.TokenFile)
		switch {
		case err == nil:
			given = string(stored)
		case !errors.Is(err, os.ErrNotExist):
			return "", false, fmt.Errorf("read token %s: %w", cfg.Paths.Server.TokenFile, err)
		}
	}
	if given == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", false, fmt.Errorf("generate token: %w", err)
		}
		return hex.EncodeToString(b), true, nil
	}
	tok, err := pki.ParseToken(given)
	if err != nil {
		return "", false, fmt.Errorf("invalid --token: %w", err)
	}
	return tok.Password, false, nil
}

// client is a client of the running datastore, for skiff's own keys.
func (s *store) client() (*clientv3.Client, error) {
	if s.member != nil {
		return s.member.Client.Get().Connect()
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: s.backend.Servers, DialTimeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("connect to the datastore: %w", err)
	}
	return c, nil
}

// bootstrapResponse is what the supervisor answers a joining server with:
// how to reach the datastore and the shared material, sealed with the
// token.
func (s *store) bootstrapResponse(cfg *config.CompletedServer, secret string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		var ds bootstrap.Datastore
		switch cfg.Datastore.Kind {
		case config.EmbeddedSQLite:
			ds.Kind = bootstrap.KindSQLite
			return bootstrap.MarshalResponse(ds, nil, secret)
		case config.External:
			ds.Kind = bootstrap.KindExternal
		case config.EmbeddedEtcd:
			ds.Kind = bootstrap.KindEtcd
			members, err := etcd.Members(ctx, s.member.Client.Get())
			if err != nil {
				return nil, err
			}
			for _, m := range members {
				if m.Started {
					ds.EtcdClientURLs = append(ds.EtcdClientURLs, m.ClientURLs...)
				}
			}
		}
		m, err := bootstrap.Collect(cfg.Paths.Server.Dir, sharedFiles(cfg.Paths.Server))
		if err != nil {
			return nil, err
		}
		return bootstrap.MarshalResponse(ds, m, secret)
	}
}
