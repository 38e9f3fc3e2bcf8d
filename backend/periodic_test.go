package backend

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// TestPeriodicRunsWhereStorageIsOwned: the periodic function rotates keys
// on an active node and on a performance secondary for a local mount,
// whose storage is its own; not on a performance standby, a DR secondary,
// or a performance secondary for a replicated mount.
func TestPeriodicRunsWhereStorageIsOwned(t *testing.T) {
	for _, tc := range []struct {
		name    string
		state   consts.ReplicationState
		local   bool
		rotates bool
	}{
		{"active node", 0, false, true},
		{"performance primary", consts.ReplicationPerformancePrimary, false, true},
		{"performance standby", consts.ReplicationPerformanceStandby, false, false},
		{"DR secondary", consts.ReplicationDRSecondary, false, false},
		{"performance secondary, replicated mount", consts.ReplicationPerformanceSecondary, false, false},
		{"performance secondary, local mount", consts.ReplicationPerformanceSecondary, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := getTestBackend(t)
			tb.mustWrite(t, "keys/k", map[string]any{"rotation_period": "1h"})
			tb.sys.ReplicationStateVal = tc.state
			tb.sys.LocalMountVal = tc.local
			tb.System().(*cachedSystemView).until = time.Time{}
			tb.clock.Add(time.Hour)
			if err := tb.periodic(t.Context(), &logical.Request{Storage: tb.storage}); err != nil {
				t.Fatal(err)
			}
			k, err := loadKey(t.Context(), tb.storage, "k")
			if err != nil {
				t.Fatal(err)
			}
			if rotated := k.LatestVersion == 2; rotated != tc.rotates {
				t.Fatalf("latest_version %d: rotated=%v, want %v", k.LatestVersion, rotated, tc.rotates)
			}
		})
	}
}

// TestPeriodicOnReadOnlyStorage: storage that refuses writes as read-only
// while the node does not yet say it is a standby (a node stepping down)
// makes the periodic function stop quietly: no error, nothing at ERROR,
// whether tidy or key maintenance meets the refusal first.
func TestPeriodicOnReadOnlyStorage(t *testing.T) {
	st := &standbyStorage{Storage: &logical.InmemStorage{}, refusal: errors.New(logical.ErrReadOnly.Error())}
	tb := newTestBackend(t, st, mountInProcess)
	tb.mustWrite(t, "keys/k", map[string]any{"rotation_period": "1h"})
	tb.mustWrite(t, "roles/rr", map[string]any{"key": "k", "refresh_ttl": "1h"})
	tb.mustWrite(t, "issue/rr", nil) // a refresh family, for tidy to remove once it has ended
	tb.mustWrite(t, "revoke", map[string]any{"jti": "gone", "exp": tb.clock.Now().Add(time.Minute).Unix()})
	tb.clock.Add(2 * time.Hour) // the family and the revocation have expired; k's rotation is due
	st.readOnly.Store(true)
	tb.logs.mu.Lock()
	tb.logs.buf.Reset()
	tb.logs.mu.Unlock()
	if err := tb.periodic(t.Context(), &logical.Request{Storage: tb.storage}); err != nil {
		t.Fatalf("periodic on read-only storage: %v", err)
	}
	if logs := tb.logs.String(); strings.Contains(logs, `"@level":"error"`) {
		t.Fatalf("periodic on read-only storage logged errors:\n%s", logs)
	}
}

// TestReplicationStateCachedBriefly: the replication state is reused for
// at most replicationStateTTL (a second), so a node's change of role is
// seen within it.
func TestReplicationStateCachedBriefly(t *testing.T) {
	c := &cachedSystemView{SystemView: &logical.StaticSystemView{}}
	c.ReplicationState()
	c.mu.Lock()
	until := c.until
	c.mu.Unlock()
	if limit := time.Now().Add(replicationStateTTL); until.After(limit) {
		t.Fatalf("the state is reused until %s, beyond %s from now", until.Format(time.RFC3339Nano), replicationStateTTL)
	}
}
