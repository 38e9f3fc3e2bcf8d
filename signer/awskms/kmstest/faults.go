package kmstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Faults are the failures the server injects into the operations a signer
// makes at run time (DescribeKey, GetPublicKey, Sign, Verify; see
// FaultedOperations). Key administration is never faulted.
//
// A faulted request meets them in this order, after its body is read but
// before it is authenticated or checked:
//
//  1. it waits Latency (or until the client gives up);
//  2. with Outage its connection is closed with no answer;
//  3. with Unavailable it gets 503 ServiceUnavailableException;
//  4. over QuotaPerSecond it gets ThrottlingException;
//  5. with probability ThrottleRate it gets ThrottlingException (400);
//  6. with probability ServerErrorRate it gets KMSInternalException (500).
//
// DenySign applies later, once the request's key is found: Sign with that
// key gets AccessDeniedException.
//
// The zero value injects nothing.
type Faults struct {
	// Latency delays every faulted request. In JSON, a Go duration string
	// ("250ms") or a number of milliseconds.
	Latency time.Duration `json:"latency"`
	// ThrottleRate and ServerErrorRate are per-request probabilities,
	// from 0 to 1.
	ThrottleRate    float64 `json:"throttle_rate"`
	ServerErrorRate float64 `json:"server_error_rate"`
	// Outage closes every faulted request's connection without an
	// answer: the client sees a transport error, as in a network failure.
	Outage bool `json:"outage"`
	// Unavailable answers every faulted request 503
	// ServiceUnavailableException: an outage the client can see.
	Unavailable bool `json:"unavailable"`
	// QuotaPerSecond is a request quota shared by all faulted requests,
	// enforced by a token bucket: requests beyond it get
	// ThrottlingException, as AWS answers requests over an account's KMS
	// quota. Zero means no quota.
	QuotaPerSecond float64 `json:"quota_per_second"`
	// QuotaBurst is the bucket's size: how many requests may arrive at
	// once. Zero means QuotaPerSecond rounded up (a second's worth), and
	// at least 1.
	QuotaBurst int `json:"quota_burst"`
	// DenySign is a key ID or key ARN whose Sign requests get
	// AccessDeniedException, as for a principal that may describe the key
	// and read its public key but lacks kms:Sign on it, or whose key policy
	// sets a kms:SigningAlgorithm or kms:MessageType condition the request
	// does not meet. Empty denies nothing.
	DenySign string `json:"deny_sign"`
}

// Validate reports whether f is usable: rates within [0, 1], nothing
// negative.
func (f Faults) Validate() error {
	var errs []error
	if f.Latency < 0 {
		errs = append(errs, fmt.Errorf("latency %v is negative", f.Latency))
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"throttle_rate", f.ThrottleRate}, {"server_error_rate", f.ServerErrorRate}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			errs = append(errs, fmt.Errorf("%s %v is not between 0 and 1", r.name, r.v))
		}
	}
	if math.IsNaN(f.QuotaPerSecond) || math.IsInf(f.QuotaPerSecond, 0) || f.QuotaPerSecond < 0 {
		errs = append(errs, fmt.Errorf("quota_per_second %v is not a non-negative number", f.QuotaPerSecond))
	}
	if f.QuotaBurst < 0 {
		errs = append(errs, fmt.Errorf("quota_burst %d is negative", f.QuotaBurst))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kmstest: invalid faults: %w", err)
	}
	return nil
}

// faultsJSON is Faults on the wire, with Latency as a string.
type faultsJSON struct {
	Latency         json.RawMessage `json:"latency,omitempty"`
	ThrottleRate    float64         `json:"throttle_rate"`
	ServerErrorRate float64         `json:"server_error_rate"`
	Outage          bool            `json:"outage"`
	Unavailable     bool            `json:"unavailable"`
	QuotaPerSecond  float64         `json:"quota_per_second"`
	QuotaBurst      int             `json:"quota_burst"`
	DenySign        string          `json:"deny_sign,omitempty"`
}

// MarshalJSON writes Latency as a Go duration string.
func (f Faults) MarshalJSON() ([]byte, error) {
	lat, _ := json.Marshal(f.Latency.String())
	return json.Marshal(faultsJSON{lat, f.ThrottleRate, f.ServerErrorRate, f.Outage, f.Unavailable, f.QuotaPerSecond, f.QuotaBurst, f.DenySign})
}

// UnmarshalJSON reads Latency as a Go duration string or a number of
// milliseconds. Unknown fields are an error, so a typo does not silently
// inject nothing.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var in faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("kmstest: decoding faults: %w", err)
	}
	out := Faults{
		ThrottleRate: in.ThrottleRate, ServerErrorRate: in.ServerErrorRate,
		Outage: in.Outage, Unavailable: in.Unavailable,
		QuotaPerSecond: in.QuotaPerSecond, QuotaBurst: in.QuotaBurst,
		DenySign: in.DenySign,
	}
	if len(in.Latency) > 0 && string(in.Latency) != "null" {
		var s string
		var ms float64
		switch {
		case json.Unmarshal(in.Latency, &s) == nil:
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("kmstest: latency: %w", err)
			}
			out.Latency = d
		case json.Unmarshal(in.Latency, &ms) == nil:
			out.Latency = time.Duration(ms * float64(time.Millisecond))
		default:
			return fmt.Errorf("kmstest: latency %s is neither a duration string nor milliseconds", in.Latency)
		}
	}
	*f = out
	return nil
}

// faultState holds the faults in force and the quota's token bucket.
type faultState struct {
	mu      sync.Mutex
	f       Faults
	limiter *rate.Limiter // nil without a quota
}

// SetFaults replaces the faults in force; requests already past a stage
// are not affected. It panics if f is invalid (see Faults.Validate).
func (s *Server) SetFaults(f Faults) {
	if err := f.Validate(); err != nil {
		panic(err)
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	old := s.faults.f
	s.faults.f = f
	if f.QuotaPerSecond == 0 {
		s.faults.limiter = nil
		return
	}
	if s.faults.limiter != nil && old.QuotaPerSecond == f.QuotaPerSecond && old.QuotaBurst == f.QuotaBurst {
		return // keep the bucket's level
	}
	burst := f.QuotaBurst
	if burst == 0 {
		burst = max(1, int(math.Ceil(f.QuotaPerSecond)))
	}
	s.faults.limiter = rate.NewLimiter(rate.Limit(f.QuotaPerSecond), burst)
}

// Faults returns the faults in force.
func (s *Server) Faults() Faults {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return s.faults.f
}

// applyFaults runs a faulted request through the faults in force. answered
// reports whether the request is finished: with err to send, or with the
// connection dropped or the client gone (err nil).
func (s *Server) applyFaults(w http.ResponseWriter, r *http.Request) (err *apiError, answered bool) {
	f := s.Faults()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return nil, true
		case <-s.quit:
			t.Stop()
			return errorf(errUnavailable, "kmstest is shutting down"), true
		}
		// The faults may have changed while the request waited.
		f = s.Faults()
	}
	if f.Outage {
		s.stats.dropped()
		drop(w)
		return nil, true
	}
	if f.Unavailable {
		return errorf(errUnavailable, "Service Unavailable (kmstest Faults.Unavailable)"), true
	}
	s.faults.mu.Lock()
	lim := s.faults.limiter
	s.faults.mu.Unlock()
	if lim != nil && !lim.Allow() {
		return errorf(errThrottling, "Rate exceeded (kmstest Faults.QuotaPerSecond %v)", f.QuotaPerSecond), true
	}
	if f.ThrottleRate > 0 && rand.Float64() < f.ThrottleRate {
		return errorf(errThrottling, "Rate exceeded (kmstest Faults.ThrottleRate)"), true
	}
	if f.ServerErrorRate > 0 && rand.Float64() < f.ServerErrorRate {
		return errorf(errInternal, "We encountered an internal error. Please try again. (kmstest Faults.ServerErrorRate)"), true
	}
	return nil, false
}

// Stats count what the server has answered since it started or since
// ResetStats. Control-endpoint requests are not counted.
type Stats struct {
	// Requests counts KMS requests by operation, whatever their outcome;
	// requests for operations kmstest does not implement count as
	// "Unknown".
	Requests map[string]int64 `json:"requests"`
	// Errors counts error answers by error code (the __type).
	Errors map[string]int64 `json:"errors"`
	// Throttled counts ThrottlingException answers, injected or over quota.
	Throttled int64 `json:"throttled"`
	// ServerErrors counts 5xx answers.
	ServerErrors int64 `json:"server_errors"`
	// Dropped counts connections closed unanswered by Faults.Outage.
	Dropped int64 `json:"dropped"`
	// InFlight is the number of KMS requests being served now;
	// MaxInFlight the most at any one time.
	InFlight    int64 `json:"in_flight"`
	MaxInFlight int64 `json:"max_in_flight"`
}

// Total returns the number of KMS requests, all operations together.
func (st Stats) Total() int64 {
	var n int64
	for _, v := range st.Requests {
		n += v
	}
	return n
}

type statsState struct {
	mu sync.Mutex
	st Stats
}

func (ss *statsState) reset() Stats {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	old := ss.st
	ss.st = Stats{
		Requests:    map[string]int64{},
		Errors:      map[string]int64{},
		InFlight:    old.InFlight,
		MaxInFlight: old.InFlight,
	}
	return old
}

func (ss *statsState) begin(op string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.st.Requests[op]++
	ss.st.InFlight++
	ss.st.MaxInFlight = max(ss.st.MaxInFlight, ss.st.InFlight)
}

func (ss *statsState) end() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.st.InFlight--
}

func (ss *statsState) failed(e *apiError) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.st.Errors[e.code]++
	if e.code == errThrottling {
		ss.st.Throttled++
	}
	if e.status() >= 500 {
		ss.st.ServerErrors++
	}
}

func (ss *statsState) dropped() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.st.Dropped++
}

func (ss *statsState) snapshot() Stats {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.st
	st.Requests = maps.Clone(st.Requests)
	st.Errors = maps.Clone(st.Errors)
	return st
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// ResetStats zeroes the counters and returns their values before, in one
// step so no request is lost between reading and resetting. MaxInFlight
// restarts from the requests in flight.
func (s *Server) ResetStats() Stats { return s.stats.reset() }
