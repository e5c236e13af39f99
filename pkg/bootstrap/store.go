package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keyPrefix holds one key per cluster token, so that a datastore shared by
// mistake between two clusters is noticed rather than overwritten.
const keyPrefix = "/skiff/bootstrap/"

// maxUpdateAttempts bounds Update's compare-and-swap retries against other
// servers updating at the same time.
const maxUpdateAttempts = 5

var errOtherCluster = errors.New("the datastore already holds a cluster made with another token; pass that cluster's --token (skiff token on one of its servers), or use another datastore")

// storeKey names the material by a short hash of the passphrase, never the
// passphrase itself.
func storeKey(passphrase string) string {
	sum := sha256.Sum256([]byte(passphrase))
	return keyPrefix + hex.EncodeToString(sum[:])[:16]
}

// Load reads the material stored with passphrase; found is false when
// there is none yet. Material stored with another token is an error: the
// datastore belongs to another cluster.
func Load(ctx context.Context, kv clientv3.KV, passphrase string) (m Material, found bool, err error) {
	key := storeKey(passphrase)
	resp, err := kv.Get(ctx, key)
	if err != nil {
		return nil, false, fmt.Errorf("read bootstrap material from the datastore: %w", err)
	}
	if len(resp.Kvs) == 0 {
		if err := checkNoOtherCluster(ctx, kv, key); err != nil {
			return nil, false, err
		}
		return nil, false, nil
	}
	m, err = Open(resp.Kvs[0].Value, passphrase)
	if err != nil {
		return nil, false, fmt.Errorf("bootstrap material in the datastore: %w", err)
	}
	return m, true, nil
}

// Save stores m unless material for passphrase is already there, in one
// transaction, so that of several servers starting together exactly one
// creates it. The others get what is stored (created false) and must
// adopt it.
func Save(ctx context.Context, kv clientv3.KV, passphrase string, m Material) (stored Material, created bool, err error) {
	key := storeKey(passphrase)
	if err := checkNoOtherCluster(ctx, kv, key); err != nil {
		return nil, false, err
	}
	sealed, err := Seal(m, passphrase)
	if err != nil {
		return nil, false, err
	}
	// The Else branch makes this the compare-and-swap shape kine supports
	// (its plain create has none), and it returns the winner's material in
	// the same round trip.
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(sealed))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return nil, false, fmt.Errorf("store bootstrap material in the datastore: %w", err)
	}
	if resp.Succeeded {
		return m, true, nil
	}
	kvs := rangeResult(resp)
	if len(kvs) == 0 {
		return nil, false, errors.New("store bootstrap material in the datastore: another server stored it, but it could not be read back; start this server again")
	}
	stored, err = Open(kvs[0].Value, passphrase)
	if err != nil {
		return nil, false, fmt.Errorf("bootstrap material in the datastore: %w", err)
	}
	return stored, false, nil
}

// Update replaces the material stored with passphrase by m (creating it if
// there is none), for a server whose shared files changed, such as new
// Secrets encryption keys.
func Update(ctx context.Context, kv clientv3.KV, passphrase string, m Material) error {
	sealed, err := Seal(m, passphrase)
	if err != nil {
		return err
	}
	key := storeKey(passphrase)
	resp, err := kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("update bootstrap material in the datastore: %w", err)
	}
	rev := int64(0)
	if len(resp.Kvs) > 0 {
		rev = resp.Kvs[0].ModRevision
	}
	// A plain put through kine reports success even when a concurrent
	// write made it lose; a compare-and-swap says so, and is retried.
	for range maxUpdateAttempts {
		txn, err := kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(sealed))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return fmt.Errorf("update bootstrap material in the datastore: %w", err)
		}
		if txn.Succeeded {
			return nil
		}
		rev = 0
		if kvs := rangeResult(txn); len(kvs) > 0 {
			rev = kvs[0].ModRevision
		}
	}
	return fmt.Errorf("update bootstrap material in the datastore: other servers kept changing it during %d attempts; try again", maxUpdateAttempts)
}

// checkNoOtherCluster fails when bootstrap material under another key than
// ours is stored: the datastore then belongs to a cluster with another
// token.
func checkNoOtherCluster(ctx context.Context, kv clientv3.KV, ours string) error {
	resp, err := kv.Get(ctx, keyPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("read bootstrap material from the datastore: %w", err)
	}
	for _, item := range resp.Kvs {
		if string(item.Key) != ours {
			return errOtherCluster
		}
	}
	return nil
}

func rangeResult(resp *clientv3.TxnResponse) []*mvccpb.KeyValue {
	for _, r := range resp.Responses {
		if rr := r.GetResponseRange(); rr != nil {
			return rr.Kvs
		}
	}
	return nil
}
