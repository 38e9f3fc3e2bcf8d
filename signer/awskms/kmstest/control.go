package kmstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// controlPrefix is where the control endpoint lives: no AWS request has a
// path other than "/".
const controlPrefix = "/_kmstest/"

// serveControl answers the control endpoint (see ServeHTTP). Its answers
// are plain JSON; errors are {"error": "..."}.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case controlPrefix + "faults":
		switch r.Method {
		case http.MethodGet:
			controlJSON(w, http.StatusOK, s.Faults())
		case http.MethodPut:
			var f Faults
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err == nil {
				err = json.Unmarshal(body, &f)
			}
			if err == nil {
				err = f.Validate()
			}
			if err != nil {
				controlJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			s.SetFaults(f)
			controlJSON(w, http.StatusOK, f)
		default:
			notAllowed(w, "GET, PUT")
		}
	case controlPrefix + "stats":
		switch r.Method {
		case http.MethodGet:
			controlJSON(w, http.StatusOK, s.Stats())
		case http.MethodDelete:
			controlJSON(w, http.StatusOK, s.ResetStats())
		default:
			notAllowed(w, "GET, DELETE")
		}
	default:
		controlJSON(w, http.StatusNotFound, map[string]string{"error": "kmstest control paths: " + controlPrefix + "faults, " + controlPrefix + "stats"})
	}
}

func notAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	controlJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed; use " + allow})
}

func controlJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Remote drives the control endpoint of a kmstest server in another
// process, such as cmd/kmstest.
type Remote struct {
	// URL is the server's base URL, as cmd/kmstest prints it.
	URL string
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
}

// Faults returns the faults in force.
func (rm Remote) Faults(ctx context.Context) (Faults, error) {
	var f Faults
	err := rm.do(ctx, http.MethodGet, "faults", nil, &f)
	return f, err
}

// SetFaults replaces the faults in force.
func (rm Remote) SetFaults(ctx context.Context, f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return rm.do(ctx, http.MethodPut, "faults", b, nil)
}

// Stats returns the server's counters.
func (rm Remote) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := rm.do(ctx, http.MethodGet, "stats", nil, &st)
	return st, err
}

// ResetStats zeroes the counters and returns their values before.
func (rm Remote) ResetStats(ctx context.Context) (Stats, error) {
	var st Stats
	err := rm.do(ctx, http.MethodDelete, "stats", nil, &st)
	return st, err
}

func (rm Remote) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := strings.TrimSuffix(rm.URL, "/") + controlPrefix + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("kmstest: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := rm.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("kmstest: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("kmstest: %s %s: reading answer: %w", method, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("kmstest: %s %s: %s: %s", method, u, resp.Status, e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("kmstest: %s %s: decoding answer: %w", method, u, err)
		}
	}
	return nil
}
