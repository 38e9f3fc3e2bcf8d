package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// readOnlyStorage is storage as a performance standby sees it: reads work,
// writes fail with logical.ErrReadOnly.
type readOnlyStorage struct{ logical.Storage }

func (readOnlyStorage) Put(context.Context, *logical.StorageEntry) error { return logical.ErrReadOnly }
func (readOnlyStorage) Delete(context.Context, string) error             { return logical.ErrReadOnly }

// TestStandbyWrites: on a performance standby every path that writes
// returns logical.ErrReadOnly itself, so Vault forwards the request to the
// active node, and logs nothing as an error; paths that only read (issue
// without refresh, verify, the JWKS, reads) answer locally; the periodic
// function does nothing.
func TestStandbyWrites(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h"})
	tb.mustWrite(t, "keys/old", nil)
	tb.mustWrite(t, "keys/old/rotate", map[string]any{"immediate": true})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_subjects": "*"})
	tb.mustWrite(t, "roles/rr", map[string]any{"key": "k", "refresh_ttl": "1h"})
	tok := tb.mustWrite(t, "issue/r", nil).Data
	rt := tb.mustWrite(t, "issue/rr", nil).Data["refresh_token"].(string)
	// A family whose latest token is revoked: refusing it marks the family
	// ended, a write.
	ended := tb.mustWrite(t, "issue/rr", nil).Data
	tb.mustWrite(t, "revoke", map[string]any{"token": ended["token"]})
	// An entry for tidy to remove: revoke refuses to store one that has
	// already expired, so it expires after it is written.
	tb.mustWrite(t, "revoke", map[string]any{"jti": "gone", "exp": tb.clock.Now().Add(time.Minute).Unix()})
	tb.clock.Add(2 * time.Minute)
	before := tb.snapshot(t)

	tb.sys.ReplicationStateVal = consts.ReplicationPerformanceStandby
	tb.System().(*cachedSystemView).until = time.Time{} // a node changing role reloads its mounts
	tb.storage = readOnlyStorage{tb.storage}
	tb.logs.buf.Reset()

	for _, tc := range []struct {
		name string
		op   logical.Operation
		path string
		data map[string]any
	}{
		{"config", logical.UpdateOperation, "config", map[string]any{"issuer": "https://other"}},
		{"config/aws", logical.UpdateOperation, "config/aws", map[string]any{"region": "eu-west-1"}},
		{"create key", logical.UpdateOperation, "keys/new", nil},
		{"update key", logical.UpdateOperation, "keys/k", map[string]any{"verification_ttl": "48h"}},
		{"delete key", logical.DeleteOperation, "keys/old", nil},
		{"rotate", logical.UpdateOperation, "keys/k/rotate", nil},
		{"revoke-version", logical.UpdateOperation, "keys/old/revoke-version", map[string]any{"version": 1}},
		{"create role", logical.UpdateOperation, "roles/new", map[string]any{"key": "k"}},
		{"update role", logical.UpdateOperation, "roles/r", map[string]any{"ttl": "1m"}},
		{"delete role", logical.DeleteOperation, "roles/rr", nil},
		{"revoke token", logical.UpdateOperation, "revoke", map[string]any{"token": tok["token"]}},
		{"revoke subject", logical.UpdateOperation, "revoke", map[string]any{"subject": "s"}},
		{"revoke role", logical.UpdateOperation, "revoke", map[string]any{"role": "r"}},
		{"tidy", logical.UpdateOperation, "tidy", nil},
		{"issue with refresh", logical.UpdateOperation, "issue/rr", nil},
		{"batch issue with refresh", logical.UpdateOperation, "issue/rr", map[string]any{"batch_input": []any{map[string]any{}, map[string]any{}}}},
		{"refresh", logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}},
		{"refresh of a revoked family", logical.UpdateOperation, "refresh", map[string]any{"refresh_token": ended["refresh_token"]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tb.request(t, tc.op, tc.path, tc.data)
			if err != logical.ErrReadOnly {
				t.Fatalf("got resp=%v err=%v, want logical.ErrReadOnly itself", resp, err)
			}
		})
	}
	if strings.Contains(tb.logs.String(), `"@level":"error"`) {
		t.Errorf("standby writes logged errors:\n%s", tb.logs.String())
	}

	// What only reads is served locally.
	tb.mustWrite(t, "issue/r", map[string]any{"subject": "x"})
	if active, reason, _ := tb.verify(t, tok["token"].(string), ""); !active {
		t.Fatalf("verify on a standby: %s", reason)
	}
	for _, p := range []string{"jwks", "keys/k", "roles/r", "config", "revocations"} {
		tb.mustRead(t, p)
	}

	// The periodic function leaves rotation to the active node.
	tb.clock.Add(2 * time.Hour)
	if err := tb.periodic(context.Background(), &logical.Request{Storage: tb.storage}); err != nil {
		t.Fatalf("periodic on a standby: %v", err)
	}
	tb.storage = tb.storage.(readOnlyStorage).Storage
	if after := tb.snapshot(t); len(after) != len(before) {
		t.Fatal("storage changed on the standby")
	}
	for k, v := range before {
		if tb.snapshot(t)[k] != v {
			t.Fatalf("storage entry %s changed on the standby", k)
		}
	}
}
