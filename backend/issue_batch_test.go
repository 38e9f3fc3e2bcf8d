package backend

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestIssueBatch: each item is checked like a single request and gets its
// own token or error, in order; refused items do not stop the others.
func TestIssueBatch(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_subjects": "user-*", "allowed_claims": "scope", "max_ttl": "1h"})
	items := []any{
		map[string]any{"subject": "user-a", "reference": "a"},
		map[string]any{"subject": "root", "reference": "bad-subject"},
		map[string]any{"subject": "user-b", "claims": `{"scope":"read"}`, "ttl": "10m"},
		map[string]any{"claims": map[string]any{"iss": "x"}},
		map[string]any{"ttl": "2h"},
		map[string]any{"sub": "user-c"},
		map[string]any{"ttl": "soon"},
		map[string]any{"claims": "[1]"},
	}
	before := tb.snapshot(t)
	resp := tb.mustWrite(t, "issue/r", map[string]any{"batch_input": items})
	results := resp.Data["batch_results"].([]batchResult)
	if len(results) != len(items) {
		t.Fatalf("%d results for %d items", len(results), len(items))
	}
	want := []string{"", `matches none of role "r"'s allowed_subjects`, "", `"iss"`, `"ttl"`, `unknown fields ["sub"]`, "ttl", `invalid "claims"`}
	jtis := map[string]bool{}
	for i, m := range results {
		if want[i] == "" {
			tok := m.Token
			if tok == "" || m.Error != "" {
				t.Fatalf("item %d: %#v", i, m)
			}
			active, reason, claims := tb.verify(t, tok, "")
			if !active {
				t.Fatalf("item %d token: %s", i, reason)
			}
			jtis[claims["jti"].(string)] = true
			if i == 2 && (claims["sub"] != "user-b" || claims["scope"] != "read") {
				t.Fatalf("item 2 claims: %v", claims)
			}
			continue
		}
		if !strings.Contains(m.Error, want[i]) || m.Token != "" {
			t.Errorf("item %d: %#v, want an error containing %q", i, m, want[i])
		}
	}
	if len(jtis) != 2 {
		t.Fatalf("jtis %v", jtis)
	}
	if results[0].Reference != "a" || results[1].Reference != "bad-subject" {
		t.Fatal("references not echoed")
	}
	if len(tb.snapshot(t)) != len(before) {
		t.Fatal("a batch without refresh tokens wrote storage")
	}

	// 1,000 items: all issued, all distinct, in order.
	many := make([]any, maxBatchItems)
	for i := range many {
		many[i] = map[string]any{"subject": fmt.Sprintf("user-%d", i)}
	}
	results = tb.mustWrite(t, "issue/r", map[string]any{"batch_input": many}).Data["batch_results"].([]batchResult)
	for i, r := range results {
		_, _, claims := tb.verify(t, r.Token, "")
		if claims["sub"] != fmt.Sprintf("user-%d", i) {
			t.Fatalf("result %d has sub %v", i, claims["sub"])
		}
	}

	// The CLI sends batch_input=@file as a string.
	results = tb.mustWrite(t, "issue/r", map[string]any{"batch_input": `[{"subject":"user-x"},{}]`}).Data["batch_results"].([]batchResult)
	if len(results) != 2 || results[0].Token == "" {
		t.Fatalf("string batch_input: %#v", results)
	}

	// Refresh roles start a family per item.
	tb.mustWrite(t, "roles/rr", map[string]any{"key": "k", "refresh_ttl": "1h"})
	results = tb.mustWrite(t, "issue/rr", map[string]any{"batch_input": []any{map[string]any{}, map[string]any{}}}).Data["batch_results"].([]batchResult)
	for _, r := range results {
		tb.mustWrite(t, "refresh", map[string]any{"refresh_token": r.RefreshToken})
	}
}

func TestIssueBatchBadInput(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_subjects": "*"})
	tooMany := make([]any, maxBatchItems+1)
	for i := range tooMany {
		tooMany[i] = map[string]any{}
	}
	for _, tc := range []struct {
		name string
		data map[string]any
		want []string
	}{
		{"empty", map[string]any{"batch_input": []any{}}, []string{`"batch_input"`, "empty"}},
		{"too many", map[string]any{"batch_input": tooMany}, []string{`"batch_input"`, "1001 items"}},
		{"not objects", map[string]any{"batch_input": []any{"a"}}, []string{`"batch_input"`, "item 0 must be an object"}},
		{"bad JSON string", map[string]any{"batch_input": `[{`}, []string{`"batch_input"`}},
		{"JSON string with an item that repeats a name", map[string]any{"batch_input": `[{"subject":"admin","subject":"user-1"}]`}, []string{`"batch_input"`, `repeats the member name "subject"`}},
		{"JSON string with a nested repeated name", map[string]any{"batch_input": `[{"claims":{"a":1,"a":2}}]`}, []string{`"batch_input"`, `repeats the member name "a"`}},
		{"JSON string with a second array", map[string]any{"batch_input": `[{"subject":"user-1"}] [{"subject":"user-2"}]`}, []string{`"batch_input"`, "nothing after it"}},
		{"JSON string with trailing garbage", map[string]any{"batch_input": `[{"subject":"user-1"}] trailing garbage`}, []string{`"batch_input"`, "nothing after it"}},
		{"with a top-level subject", map[string]any{"batch_input": []any{map[string]any{}}, "subject": "x"}, []string{`"subject"`, "each item"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", tc.data, tc.want...)
		})
	}
	tb.wantNotFound(t, logical.UpdateOperation, "issue/missing", map[string]any{"batch_input": []any{map[string]any{}}})

	// A fractional ttl in an item: that item's error.
	results := tb.mustWrite(t, "issue/r", map[string]any{"batch_input": []any{map[string]any{"ttl": "1.5s"}}}).Data["batch_results"].([]batchResult)
	if len(results) != 1 || results[0].Token != "" || results[0].Error != `invalid "ttl": must be a whole number of seconds` {
		t.Fatalf("results %+v", results)
	}

	// An item's claims as a JSON string that repeats a name: that item's
	// error, as for any other bad item.
	results = tb.mustWrite(t, "issue/r", map[string]any{"batch_input": []any{map[string]any{"claims": `{"a":1,"a":2}`}}}).Data["batch_results"].([]batchResult)
	if len(results) != 1 || results[0].Token != "" || !strings.Contains(results[0].Error, `invalid "claims": repeats the member name "a"`) {
		t.Fatalf("results %+v", results)
	}
}

// TestIssueBatchStopsWhenTheCallerLeaves: a batch whose request ends while
// it runs (the client hung up or timed out) signs and stores nothing more.
func TestIssueBatchStopsWhenTheCallerLeaves(t *testing.T) {
	tb := refreshBackend(t)
	items := make([]any, 200)
	for i := range items {
		items[i] = map[string]any{"subject": "user-a"}
	}
	storage, err := batchEndingAtFirstFamily(t, tb, items)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("batch of a cancelled request: err=%v, want context.Canceled", err)
	}
	// Each worker may finish the item it was on.
	if n := storage.puts.Load(); n > int64(runtime.GOMAXPROCS(0)) {
		t.Fatalf("a batch went on after its request ended: %d refresh families stored or tried, want at most %d", n, runtime.GOMAXPROCS(0))
	}
	if !strings.Contains(tb.logs.String(), "batch stopped") {
		t.Fatal("the stopped batch was not logged")
	}
}

// batchEndingAtFirstFamily issues items as a batch from role r, whose
// request ends (its context is cancelled) as the first refresh family is
// stored, and returns the storage, which counts the families stored or
// tried, and the request's error.
func batchEndingAtFirstFamily(t *testing.T, tb *testBackend, items []any) (*cancelOnPut, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	storage := &cancelOnPut{Storage: tb.storage, prefix: refreshPrefix, cancel: cancel}
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "issue/r", Storage: storage, Data: map[string]any{"batch_input": items}}
	_, err := tb.handler.HandleRequest(ctx, req)
	return storage, err
}

// cancelOnPut calls cancel when an entry under prefix is stored, and
// counts the tries to store one.
type cancelOnPut struct {
	logical.Storage
	prefix string
	cancel func()
	puts   atomic.Int64
}

func (s *cancelOnPut) Put(ctx context.Context, e *logical.StorageEntry) error {
	err := s.Storage.Put(ctx, e)
	if strings.HasPrefix(e.Key, s.prefix) {
		s.puts.Add(1)
		s.cancel()
	}
	return err
}

// TestIssueBatchStoppedCountsRefusedItems: a batch stopped because its
// request ended says how many items were done, refused ones included: the
// refused items before the one whose family store ends the request are
// done, as each worker finishes the item it took.
func TestIssueBatchStoppedCountsRefusedItems(t *testing.T) {
	tb := refreshBackend(t) // allowed_subjects user-*
	const refused = 20
	items := make([]any, 0, 2*refused+1)
	for range refused {
		items = append(items, map[string]any{"subject": "svc-x"})
	}
	for range refused + 1 {
		items = append(items, map[string]any{"subject": "user-a"})
	}
	_, err := batchEndingAtFirstFamily(t, tb, items)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("batch of a cancelled request: err=%v, want context.Canceled", err)
	}
	var done, total int
	if _, scanErr := fmt.Sscanf(err.Error(), "batch stopped after %d of %d items", &done, &total); scanErr != nil {
		t.Fatalf("error %q: %v", err, scanErr)
	}
	// The refused items and the first issued one, and at most one more
	// item per other worker.
	if total != len(items) || done < refused+1 || done > refused+runtime.GOMAXPROCS(0) {
		t.Fatalf("batch stopped after %d of %d items, want %d to %d of %d", done, total, refused+1, refused+runtime.GOMAXPROCS(0), len(items))
	}
}
