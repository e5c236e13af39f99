package bootstrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-io/skiff/pkg/datastore"
)

// startKine runs the server's own datastore component (kine on SQLite),
// and returns an etcd client of it.
func startKine(t *testing.T) *clientv3.Client {
	t.Helper()
	// t.TempDir's path can exceed the limit of a unix socket's.
	dir, err := os.MkdirTemp("", "kine")
	if err != nil {
		t.Fatal(err)
	}
	ds := &datastore.Datastore{
		DBDir:   dir,
		StateDB: filepath.Join(dir, "state.db"),
		Socket:  filepath.Join(dir, "kine.sock"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, err := ds.Start(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: ds.ETCD.Get().Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		cancel()
		<-done
		_ = os.RemoveAll(dir)
	})
	return client
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSaveThenLoad(t *testing.T) {
	ctx, kv := testContext(t), startKine(t)
	if _, found, err := Load(ctx, kv, passphrase); err != nil || found {
		t.Fatalf("Load of an empty datastore: found %v, %v", found, err)
	}
	m := testMaterial()
	stored, created, err := Save(ctx, kv, passphrase, m)
	if err != nil || !created || !stored.Equal(m) {
		t.Fatalf("first Save: created %v, %v", created, err)
	}
	loaded, found, err := Load(ctx, kv, passphrase)
	if err != nil || !found || !loaded.Equal(m) {
		t.Fatalf("Load: found %v, %v; material equal: %v", found, err, loaded.Equal(m))
	}

	other := testMaterial()
	other["tls/server-ca.key"] = []byte("ANOTHER CA KEY")
	stored, created, err = Save(ctx, kv, passphrase, other)
	if err != nil || created || !stored.Equal(m) {
		t.Fatalf("second Save: created %v, %v; want the first material back", created, err)
	}

	resp, err := kv.Get(ctx, keyPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != storeKey(passphrase) || strings.Contains(string(resp.Kvs[0].Key), passphrase) {
		t.Fatalf("stored keys %v", resp.Kvs)
	}
	if strings.Contains(string(resp.Kvs[0].Value), "CA KEY") {
		t.Fatal("the datastore holds the material in the clear")
	}
}

func TestConcurrentSavesAgree(t *testing.T) {
	ctx, kv := testContext(t), startKine(t)
	type result struct {
		stored  Material
		created bool
		err     error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			m := testMaterial()
			m["tls/server-ca.key"] = []byte{byte('A' + i)}
			r := &results[i]
			r.stored, r.created, r.err = Save(ctx, kv, passphrase, m)
		})
	}
	wg.Wait()
	creators := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("Save %d: %v", i, r.err)
		}
		if r.created {
			creators++
		}
	}
	if creators != 1 {
		t.Fatalf("%d Saves created the material, want exactly 1", creators)
	}
	if !results[0].stored.Equal(results[1].stored) {
		t.Fatal("the two servers ended with different material")
	}
	loaded, _, err := Load(ctx, kv, passphrase)
	if err != nil || !loaded.Equal(results[0].stored) {
		t.Fatalf("Load after the race: %v; equal to what both adopted: %v", err, loaded.Equal(results[0].stored))
	}
}

func TestAnotherClustersMaterial(t *testing.T) {
	ctx, kv := testContext(t), startKine(t)
	if _, _, err := Save(ctx, kv, "the-other-clusters-token", testMaterial()); err != nil {
		t.Fatal(err)
	}
	_, found, err := Load(ctx, kv, passphrase)
	if !errors.Is(err, errOtherCluster) || found {
		t.Fatalf("Load with another token: found %v, %v", found, err)
	}
	if !strings.Contains(err.Error(), "another token") || !strings.Contains(err.Error(), "--token") {
		t.Errorf("error %q does not name cause and fix", err)
	}
	if _, created, err := Save(ctx, kv, passphrase, testMaterial()); !errors.Is(err, errOtherCluster) || created {
		t.Fatalf("Save with another token: created %v, %v", created, err)
	}
}

func TestUpdate(t *testing.T) {
	ctx, kv := testContext(t), startKine(t)
	m := testMaterial()
	// Update also creates, for a server that had stored nothing yet.
	if err := Update(ctx, kv, passphrase, m); err != nil {
		t.Fatal(err)
	}
	m["cred/encryption-config.json"] = []byte(`{"kind":"EncryptionConfiguration"}`)
	if err := Update(ctx, kv, passphrase, m); err != nil {
		t.Fatal(err)
	}
	loaded, found, err := Load(ctx, kv, passphrase)
	if err != nil || !found || !loaded.Equal(m) {
		t.Fatalf("Load after Update: found %v, %v; equal %v", found, err, loaded.Equal(m))
	}
}

func TestLoadWithAnAlteredValue(t *testing.T) {
	ctx, kv := testContext(t), startKine(t)
	if _, _, err := Save(ctx, kv, passphrase, testMaterial()); err != nil {
		t.Fatal(err)
	}
	// What a server that stored it with another token's password under
	// this token's key would look like.
	sealed, err := Seal(testMaterial(), "another-password")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, storeKey(passphrase), string(sealed)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(ctx, kv, passphrase); !errors.Is(err, ErrWrongToken) {
		t.Fatalf("Load of undecryptable material: %v, want ErrWrongToken", err)
	}
}
