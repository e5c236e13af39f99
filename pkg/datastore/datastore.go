// Package datastore runs kine in-process so the apiserver has an etcd API
// backed by SQLite in the data dir, or by any other kine endpoint.
package datastore

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers/generic"
	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/endpoint"
	"github.com/k3s-io/kine/pkg/tls"
	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/component"
)

// sqliteParams are kine's SQLite defaults plus a WAL size limit. SQLite
// reuses its WAL from the start after each checkpoint but never shrinks the
// file, so without a limit the WAL keeps the size of its largest burst for
// good: kine's VACUUM at start writes the whole database through it, and a
// compaction writes a batch of deletions. With journal_size_limit SQLite
// truncates the WAL to this size whenever a checkpoint has reset it. kine
// hands _pragma parameters to the pure-Go SQLite driver skiff is built with
// unchanged.
var sqliteParams = sqlite.DefaultParams + "&_pragma=journal_size_limit(8388608)"

// maxUnixSocketPath is the kernel's sun_path limit less the terminating NUL.
const maxUnixSocketPath = 107

// Datastore is the kine component. Once it is ready, ETCD tells the
// apiserver, which requires it, where to connect.
type Datastore struct {
	// Endpoint is a kine endpoint; empty means SQLite in StateDB.
	Endpoint string
	// CAFile, CertFile and KeyFile are the TLS files kine reaches an
	// external database with.
	CAFile, CertFile, KeyFile string
	// DBDir holds StateDB and Socket, kine's listener.
	DBDir, StateDB, Socket string

	ETCD component.Output[endpoint.ETCDConfig]
}

func (d *Datastore) Name() string { return "datastore" }

func (d *Datastore) Start(ctx context.Context) (<-chan error, error) {
	if err := os.MkdirAll(d.DBDir, 0o700); err != nil {
		return nil, fmt.Errorf("create database dir: %w", err)
	}
	if err := os.Chmod(d.DBDir, 0o700); err != nil {
		return nil, fmt.Errorf("secure database dir: %w", err)
	}
	sock := d.Socket
	if len(sock) > maxUnixSocketPath {
		return nil, fmt.Errorf("data dir path is too long for a unix socket (%s is %d bytes, the limit is %d); use a shorter --data-dir", sock, len(sock), maxUnixSocketPath)
	}

	ep := d.Endpoint
	switch {
	case ep == "":
		ep = "sqlite://" + d.StateDB + "?" + sqliteParams
	case strings.HasPrefix(ep, "sqlite://") && !strings.Contains(ep, "?"):
		// A bare SQLite path gets the same WAL and locking settings as the
		// embedded default, so it is as crash-safe.
		ep += "?" + sqliteParams
	}
	var wg sync.WaitGroup
	// kine's library leaves these zero; these are the values its own
	// command line defaults to.
	cfg := endpoint.Config{
		Listener:  "unix://" + sock,
		Endpoint:  ep,
		WaitGroup: &wg,
		BackendTLSConfig: tls.Config{
			CAFile:   d.CAFile,
			CertFile: d.CertFile,
			KeyFile:  d.KeyFile,
		},
		ConnectionPoolConfig: generic.ConnectionPoolConfig{
			MaxIdle:     20,
			MaxIdleTime: 2 * time.Minute,
		},
		NotifyInterval:      5 * time.Second,
		EmulatedETCDVersion: "3.6.11",
		CompactInterval:     5 * time.Minute,
		CompactTimeout:      5 * time.Second,
		CompactMinRetain:    1000,
		CompactBatchSize:    1000,
		PollBatchSize:       500,
		PollInterval:        time.Second,
	}
	// kine retries an unreachable database for as long as it takes, with
	// one error line a second; say once what to check.
	slow := time.AfterFunc(30*time.Second, func() {
		logrus.Warnf("the datastore (%s) is still not reachable after 30s; check --datastore-endpoint and its TLS files, and that the database runs and accepts this host; skiff keeps trying", describe(d.Endpoint))
	})
	etcd, err := endpoint.Listen(ctx, cfg)
	slow.Stop()
	if err != nil {
		return nil, fmt.Errorf("open datastore %s: %w", describe(d.Endpoint), err)
	}
	d.ETCD.Set(etcd)

	done := make(chan error, 1)
	go func() {
		<-ctx.Done()
		// kine closes its database once every goroutine on wg has returned.
		wg.Wait()
		close(done)
	}()
	return done, nil
}

// describe names an endpoint without its credentials.
func describe(ep string) string {
	if ep == "" {
		return "(embedded SQLite)"
	}
	if i := strings.Index(ep, "://"); i > 0 {
		return ep[:i] + " endpoint"
	}
	return "endpoint"
}
