package backend

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	sdkplugin "github.com/hashicorp/vault/sdk/plugin"
)

// standbyStorage is storage as a performance standby has it once readOnly
// is set: reads work, writes fail with refusal.
type standbyStorage struct {
	logical.Storage
	readOnly atomic.Bool
	refusal  error
}

func (s *standbyStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if s.readOnly.Load() {
		return s.refusal
	}
	return s.Storage.Put(ctx, e)
}

func (s *standbyStorage) Delete(ctx context.Context, key string) error {
	if s.readOnly.Load() {
		return s.refusal
	}
	return s.Storage.Delete(ctx, key)
}

// mountOverGRPC serves the backend through the SDK's gRPC plugin transport,
// as Vault runs an external plugin: storage, the system view and every
// request and error cross it.
func mountOverGRPC(t testing.TB, factory logical.Factory, conf *logical.BackendConfig) logical.Backend {
	t.Helper()
	client, _ := gplugin.TestPluginGRPCConn(t, false, map[string]gplugin.Plugin{
		sdkplugin.BackendPluginName: &sdkplugin.GRPCBackendPlugin{Factory: factory, Logger: conf.Logger},
	})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(sdkplugin.BackendPluginName)
	if err != nil {
		t.Fatal(err)
	}
	lb := raw.(logical.Backend)
	if err := lb.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	return lb
}

// TestStandbyWrites: on a performance standby every path that writes
// returns logical.ErrReadOnly itself, so Vault forwards the request to the
// active node, and logs nothing as an error; paths that only read (issue
// without refresh, verify, the JWKS, reads) answer locally; the periodic
// function does nothing. Over gRPC, Vault's storage refuses with
// logical.ErrReadOnly but the plugin receives only its text, and Vault
// receives only the text of what the plugin returns.
func TestStandbyWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mount   mountFunc
		refusal error
	}{
		// What the plugin's storage returns in production.
		{"in process", mountInProcess, errors.New(logical.ErrReadOnly.Error())},
		{"over gRPC", mountOverGRPC, logical.ErrReadOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &standbyStorage{Storage: &logical.InmemStorage{}, refusal: tc.refusal}
			testStandbyWrites(t, newTestBackend(t, st, tc.mount), st)
		})
	}
}

func testStandbyWrites(t *testing.T, tb *testBackend, st *standbyStorage) {
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
	st.readOnly.Store(true)
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
			forwarded := err == logical.ErrReadOnly
			if _, direct := tb.handler.(*backend); !direct {
				// Over gRPC only the text arrives; a wrapped error's
				// differs.
				forwarded = err != nil && err.Error() == logical.ErrReadOnly.Error()
			}
			if !forwarded {
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
	st.readOnly.Store(false)
	if after := tb.snapshot(t); len(after) != len(before) {
		t.Fatal("storage changed on the standby")
	}
	for k, v := range before {
		if tb.snapshot(t)[k] != v {
			t.Fatalf("storage entry %s changed on the standby", k)
		}
	}
}
