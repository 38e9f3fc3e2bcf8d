package kmstest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRemote drives the control endpoint with Remote, as an end-to-end test
// drives cmd/kmstest.
func TestRemote(t *testing.T) {
	s, url := NewTestServer(t, Options{Control: true})
	rm := Remote{URL: url + "/"} // a trailing slash is fine
	ctx := t.Context()
	c := NewClient(url, noRetry)
	id, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}

	want := Faults{Latency: 5 * time.Millisecond, ThrottleRate: 1, QuotaPerSecond: 100}
	if err := rm.SetFaults(ctx, want); err != nil {
		t.Fatalf("SetFaults: %v", err)
	}
	if got := s.Faults(); got != want {
		t.Errorf("server faults = %+v, want %+v", got, want)
	}
	if got, err := rm.Faults(ctx); err != nil || got != want {
		t.Errorf("Faults = %+v, %v; want %+v", got, err, want)
	}
	if err := faultedCalls(c, id)["Sign"](ctx); apiCode(err) != "ThrottlingException" {
		t.Errorf("Sign under remote faults: %v", err)
	}

	st, err := rm.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	// Control requests are not counted: only the Sign.
	if st.Total() != 1 || st.Requests["Sign"] != 1 || st.Throttled != 1 || st.Errors["ThrottlingException"] != 1 {
		t.Errorf("Stats = %+v; want one throttled Sign", st)
	}
	before, err := rm.ResetStats(ctx)
	if err != nil || before.Requests["Sign"] != 1 {
		t.Errorf("ResetStats = %+v, %v; want the stats before", before, err)
	}
	if st, err := rm.Stats(ctx); err != nil || st.Total() != 0 || st.Throttled != 0 {
		t.Errorf("Stats after reset = %+v, %v", st, err)
	}

	if err := rm.SetFaults(ctx, Faults{ThrottleRate: 2}); err == nil {
		t.Error("SetFaults sent invalid faults")
	}
	if err := (Remote{URL: "http://127.0.0.1:1"}).SetFaults(ctx, Faults{}); err == nil {
		t.Error("SetFaults to a closed port succeeded")
	}
}

func TestControlEndpoint(t *testing.T) {
	s, url := NewTestServer(t, Options{Control: true})
	tests := []struct {
		name, method, path, body string
		status                   int
		// in is a substring of the answer.
		in string
	}{
		{"latency in milliseconds", "PUT", "/_kmstest/faults", `{"latency":250,"throttle_rate":0.5}`, 200, `"latency":"250ms"`},
		{"read back", "GET", "/_kmstest/faults", ``, 200, `"throttle_rate":0.5`},
		{"replace, not merge", "PUT", "/_kmstest/faults", `{"latency":"1s"}`, 200, `"throttle_rate":0`},
		{"unknown field", "PUT", "/_kmstest/faults", `{"latency":"1s","throttle":1}`, 400, `unknown field`},
		{"invalid rate", "PUT", "/_kmstest/faults", `{"server_error_rate":2}`, 400, `server_error_rate`},
		{"not JSON", "PUT", "/_kmstest/faults", `latency=1s`, 400, `error`},
		{"POST faults", "POST", "/_kmstest/faults", `{}`, 405, `GET, PUT`},
		{"stats", "GET", "/_kmstest/stats", ``, 200, `"max_in_flight":0`},
		{"PUT stats", "PUT", "/_kmstest/stats", `{}`, 405, `GET, DELETE`},
		{"unknown path", "GET", "/_kmstest/keys", ``, 404, `/_kmstest/faults`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.in) {
				t.Errorf("%s %s: %d %s; want %d containing %s", tt.method, tt.path, resp.StatusCode, b, tt.status, tt.in)
			}
			if !json.Valid(b) {
				t.Errorf("answer %q is not JSON", b)
			}
		})
	}
	// The last good PUT is in force; the bad ones changed nothing.
	if got, want := s.Faults(), (Faults{Latency: time.Second}); got != want {
		t.Errorf("faults = %+v, want %+v", got, want)
	}
	if st := s.Stats(); st.Total() != 0 {
		t.Errorf("control requests were counted: %+v", st)
	}
}
