//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helpers of TestRaftCluster: a three-node raft cluster on loopback, a
// steady issue load over the HTTP API, and reads to compare across nodes.
// Everything here is named cluster* so as not to collide with other tests.

// clusterNode is one member of the raft cluster.
type clusterNode struct {
	*vaultServer
	id string // raft node_id
}

func (n *clusterNode) String() string { return n.id + " (" + n.addr + ")" }

// clusterNewNode writes the config of one raft node: its own data and plugin
// directories, API and cluster listeners on free loopback ports. taken holds
// the ports handed out so far, so that two nodes never get the same one.
//
// performance_multiplier = 1 is Raft's tightest timing (heartbeat and
// election timeouts of about 1s instead of the default multiplier 5's 5s):
// what an operator who cares about failover time configures.
func clusterNewNode(t *testing.T, tl *tools, id string, taken map[int]bool) *clusterNode {
	t.Helper()
	s := newServer(t, tl, false)
	for taken[s.port] {
		s.port = freePort(t)
	}
	taken[s.port] = true
	s.addr = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	s.clusterPort = freePort(t)
	for taken[s.clusterPort] {
		s.clusterPort = freePort(t)
	}
	taken[s.clusterPort] = true
	s.dataDir = filepath.Join(s.dir, "raft")
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.dir, "vault.hcl"), fmt.Sprintf(`
storage "raft" {
  path                   = %q
  node_id                = %q
  performance_multiplier = 1
}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr         = "http://127.0.0.1:%d"
cluster_addr     = "https://127.0.0.1:%d"
disable_mlock    = true
plugin_directory = %q
ui               = false
`, s.dataDir, id, s.port, s.clusterPort, s.port, s.clusterPort, s.pluginDir))
	return &clusterNode{vaultServer: s, id: id}
}

// clusterSIGKILL kills the node's process group (Vault and its plugin
// processes) with SIGKILL: no shutdown, no step-down, no flush.
func (n *clusterNode) clusterSIGKILL(t *testing.T) {
	t.Helper()
	if n.cmd == nil {
		t.Fatalf("%s is not running", n)
	}
	if err := syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", n, err)
	}
	select {
	case <-n.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %s of SIGKILL", n, stopTimeout)
	}
	n.cmd = nil
}

// clusterUnseal unseals a node that is initialised (or has joined) and waits
// until it is unsealed and serving: 200 (active) or 429 (standby).
func (n *clusterNode) clusterUnseal(t *testing.T) {
	t.Helper()
	body, err := json.Marshal(map[string]string{"key": n.unsealKey})
	if err != nil {
		t.Fatal(err)
	}
	status, out, err := clusterHTTP(clusterClient(30*time.Second), http.MethodPut, n.addr+"/v1/sys/unseal", "", string(body))
	if err != nil || status != http.StatusOK {
		t.Fatalf("PUT %s/v1/sys/unseal: %d %v: %s", n.addr, status, err, redact(string(out)))
	}
	// A node that has just joined finishes its join on unseal; it may still
	// report sealed for a moment.
	var last string
	err = waitFor(activeTimeout, 200*time.Millisecond, func() (bool, error) {
		_, out, err := clusterHTTP(clusterClient(2*time.Second), http.MethodGet, n.addr+"/v1/sys/seal-status", "", "")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = string(out)
		var st struct {
			Sealed bool `json:"sealed"`
		}
		return json.Unmarshal(out, &st) == nil && !st.Sealed, nil
	})
	if err != nil {
		t.Fatalf("%s still sealed after unseal (last: %s): %v", n, redact(last), err)
	}
	n.waitHealthy(t, activeTimeout, http.StatusOK, http.StatusTooManyRequests)
}

// clusterClient is an HTTP client without keep-alives, so that every request
// opens a connection and a dead node shows up as a refused connection. It
// never follows a redirect by itself: a standby that cannot forward answers
// 307 to the node it believes active, and clusterIssue follows that one
// redirect itself, so that it can record both answers.
func clusterClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clusterHTTP sends one request and returns the status and body (at most
// 1 MiB). It never fails the test, so goroutines may call it.
func clusterHTTP(client *http.Client, method, url, token, body string) (int, []byte, error) {
	status, _, b, err := clusterHTTPHeader(client, method, url, token, body)
	return status, b, err
}

// clusterHTTPHeader is clusterHTTP with the response's header.
func clusterHTTPHeader(client *http.Client, method, url, token, body string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, b, err
}

// clusterData does an authenticated request that must answer 200 and returns
// its "data".
func (n *clusterNode) clusterData(t *testing.T, method, path, body string) map[string]any {
	t.Helper()
	status, out, err := clusterHTTP(clusterClient(30*time.Second), method, n.addr+"/v1/"+path, n.rootToken, body)
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s %s on %s: %d %v: %s", method, path, n, status, err, redact(string(out)))
	}
	var resp struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("%s %s on %s: not JSON: %v", method, path, n, err)
	}
	return resp.Data
}

// clusterPeer is one server of `vault operator raft list-peers`.
type clusterPeer struct {
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

func (n *clusterNode) clusterPeers() ([]clusterPeer, error) {
	r := n.run(n.rootToken, "", "operator", "raft", "list-peers", "-format=json")
	if r.Err != nil {
		return nil, fmt.Errorf("list-peers on %s: %v: %s", n, r.Err, redact(r.Stderr))
	}
	var out struct {
		Data struct {
			Config struct {
				Servers []clusterPeer `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		return nil, fmt.Errorf("list-peers on %s: %v", n, err)
	}
	return out.Data.Config.Servers, nil
}

// clusterAutopilotServer is one server in `vault operator raft autopilot
// state`.
type clusterAutopilotServer struct {
	ID         string `json:"id"`
	NodeStatus string `json:"node_status"`
	Healthy    bool   `json:"healthy"`
	Status     string `json:"status"` // leader, voter, non-voter
}

func (n *clusterNode) clusterAutopilot() (map[string]clusterAutopilotServer, error) {
	r := n.run(n.rootToken, "", "operator", "raft", "autopilot", "state", "-format=json")
	if r.Err != nil {
		return nil, fmt.Errorf("autopilot state on %s: %v: %s", n, r.Err, redact(r.Stderr))
	}
	var out struct {
		Servers map[string]clusterAutopilotServer `json:"servers"`
		Data    *struct {
			Servers map[string]clusterAutopilotServer `json:"servers"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		return nil, fmt.Errorf("autopilot state on %s: %v", n, err)
	}
	if out.Data != nil && out.Servers == nil {
		return out.Data.Servers, nil
	}
	return out.Servers, nil
}

// clusterWaitVoters waits until the raft configuration seen from n is
// exactly the nodes ids, each a voter that autopilot reports healthy, and
// returns how long that took.
func (n *clusterNode) clusterWaitVoters(t *testing.T, ids []string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	want := slices.Clone(ids)
	slices.Sort(want)
	var last, logged string
	note := func(s string) {
		last = s
		if s != logged {
			t.Logf("waiting for voters, %.1fs: %s", time.Since(start).Seconds(), s)
			logged = s
		}
	}
	err := waitFor(timeout, 500*time.Millisecond, func() (bool, error) {
		peers, err := n.clusterPeers()
		if err != nil {
			last = err.Error()
			return false, nil
		}
		var got []string
		var notVoter []string
		for _, p := range peers {
			got = append(got, p.NodeID)
			if !p.Voter {
				notVoter = append(notVoter, p.NodeID)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) || len(notVoter) > 0 {
			note(fmt.Sprintf("peers %v, not voters %v", got, notVoter))
			return false, nil
		}
		ap, err := n.clusterAutopilot()
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, id := range want {
			s, ok := ap[id]
			if !ok || !s.Healthy || (s.Status != "voter" && s.Status != "leader") {
				note(fmt.Sprintf("autopilot: %s is %+v", id, s))
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("waiting on %s for voters %v (last: %s): %v", n, want, last, err)
	}
	return time.Since(start)
}

// clusterLeaderInfo is /v1/sys/leader.
type clusterLeaderInfo struct {
	IsSelf        bool   `json:"is_self"`
	LeaderAddress string `json:"leader_address"`
}

// clusterActive returns the active node among nodes: the only one that says
// is_self, with every other naming its address as the leader.
func clusterActive(nodes []*clusterNode) (*clusterNode, error) {
	var active *clusterNode
	addrs := map[string]bool{}
	for _, n := range nodes {
		_, out, err := clusterHTTP(clusterClient(5*time.Second), http.MethodGet, n.addr+"/v1/sys/leader", "", "")
		if err != nil {
			return nil, fmt.Errorf("sys/leader on %s: %v", n, err)
		}
		var li clusterLeaderInfo
		if err := json.Unmarshal(out, &li); err != nil {
			return nil, fmt.Errorf("sys/leader on %s: %v", n, err)
		}
		addrs[li.LeaderAddress] = true
		if li.IsSelf {
			if active != nil {
				return nil, fmt.Errorf("both %s and %s say they are active", active, n)
			}
			active = n
		}
	}
	if active == nil {
		return nil, errors.New("no node says it is active")
	}
	if len(addrs) != 1 || !addrs[active.addr] {
		return nil, fmt.Errorf("nodes disagree on the leader: %v (active %s)", addrs, active)
	}
	return active, nil
}

// clusterAttempt is one issue request of the load. When n answers 307 to a
// node of the cluster, the attempt follows that one redirect, as Vault's API
// client and CLI do, and the rest of it describes the second answer.
type clusterAttempt struct {
	node       *clusterNode
	start, end time.Time
	location   string       // n's 307: its Location
	via        *clusterNode // the node that Location is on, when followed
	status     int          // HTTP status; 0 when no response came
	errs       []string     // the response's "errors"
	netErr     string       // no HTTP response: the transport's error
	token, kid string
	jti        string
	problem    string // something wrong with a response itself
}

// ok is whether a client that follows Vault's redirect got a token.
func (a clusterAttempt) ok() bool { return a.status == http.StatusOK && a.problem == "" }

// direct is whether n itself answered with a token (a standby forwards to
// the active node): no redirect.
func (a clusterAttempt) direct() bool { return a.ok() && a.location == "" }

func (a clusterAttempt) describe(t0 time.Time) string {
	d := fmt.Sprintf("%s at %+.3fs (%.0fms): ", a.node.id, a.start.Sub(t0).Seconds(), float64(a.end.Sub(a.start).Microseconds())/1000)
	if a.location != "" {
		d += "HTTP 307 to " + a.location
		if a.via == nil {
			return d + ", not followed"
		}
		d += ", then "
	}
	switch {
	case a.netErr != "":
		return d + "no response: " + a.netErr
	case a.problem != "":
		return d + fmt.Sprintf("HTTP %d: %s", a.status, a.problem)
	default:
		return d + fmt.Sprintf("HTTP %d %s", a.status, redact(strings.Join(a.errs, "; ")))
	}
}

// clusterIssue does one POST /v1/jwt/issue/<role> on n. A 307 to the same
// path on one of follow is followed once; any other redirect is a problem.
func clusterIssue(client *http.Client, n *clusterNode, role string, follow []*clusterNode) (a clusterAttempt) {
	a = clusterAttempt{node: n, start: time.Now()}
	defer func() { a.end = time.Now() }()
	url := n.addr + "/v1/" + mountPath + "/issue/" + role
	status, header, body, err := clusterHTTPHeader(client, http.MethodPost, url, n.rootToken, "{}")
	if err == nil && status == http.StatusTemporaryRedirect {
		// A standby that cannot forward to the active node redirects the
		// client there instead (Vault's fallback), with an empty body.
		a.location = header.Get("Location")
		switch a.via = clusterNodeAt(a.location, follow); {
		case jwtPattern.Match(body):
			a.problem, a.status = "a redirect carries a token", status
			return a
		case follow == nil:
			a.via = nil
			a.problem, a.status = "a redirect, where none may happen", status
			return a
		case a.via == nil || a.location != a.via.addr+"/v1/"+mountPath+"/issue/"+role:
			a.via = nil
			a.problem, a.status = "a redirect to no node of the cluster, or not to this path", status
			return a
		}
		status, _, body, err = clusterHTTPHeader(client, http.MethodPost, a.location, n.rootToken, "{}")
		if err == nil && status == http.StatusTemporaryRedirect {
			a.problem, a.status = "a second redirect", status
			return a
		}
	}
	if err != nil && status == 0 {
		a.netErr = err.Error()
		return a
	}
	a.status = status
	if err != nil {
		a.problem = "reading the body: " + err.Error()
		return a
	}
	var out struct {
		Data struct {
			Token string `json:"token"`
			Kid   string `json:"kid"`
			Jti   string `json:"jti"`
		} `json:"data"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		a.problem = fmt.Sprintf("body is not JSON (%v): %.200s", err, redact(string(body)))
		return a
	}
	secrets.add(out.Data.Token)
	a.errs, a.token, a.kid, a.jti = out.Errors, out.Data.Token, out.Data.Kid, out.Data.Jti
	switch {
	case status == http.StatusOK && a.token == "":
		a.problem = "200 without a token"
	case status != http.StatusOK && (a.token != "" || jwtPattern.Match(body)):
		a.problem = "an error response carries a token"
	case status != http.StatusOK && len(a.errs) == 0:
		a.problem = fmt.Sprintf("an error response without errors: %.200s", redact(string(body)))
	}
	return a
}

// clusterLoad issues through every node, one worker per node, each pausing
// between requests, until stopped. Workers follow a standby's redirect to
// any node of the cluster.
type clusterLoad struct {
	mu       sync.Mutex
	attempts []clusterAttempt
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func clusterStartLoad(nodes []*clusterNode, role string, pause, timeout time.Duration) *clusterLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &clusterLoad{cancel: cancel}
	for _, n := range nodes {
		l.wg.Go(func() {
			client := clusterClient(timeout)
			for ctx.Err() == nil {
				a := clusterIssue(client, n, role, nodes)
				l.mu.Lock()
				l.attempts = append(l.attempts, a)
				l.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	return l
}

// stop ends the load and waits for the workers; it may be called twice.
func (l *clusterLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *clusterLoad) snapshot() []clusterAttempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.attempts)
}

// clusterKeyView is what must not change about a key across nodes and
// failover: its algorithm, and every version's kid and public JWK. Which
// version signs (states, latest_version) and times are left out, since a
// staged rotation may move a version from "next" to "current" with time.
type clusterKeyView struct {
	Algorithm string
	Versions  map[string]clusterVersionView
}

type clusterVersionView struct {
	Kid       string
	PublicKey string // canonical JSON
}

// clusterState is what TestRaftCluster compares between nodes and across the
// failover.
type clusterState struct {
	KeyList  []string
	Key      clusterKeyView
	Role     string // canonical JSON of jwt/roles/<role>
	Config   string // canonical JSON of jwt/config
	JWKSKids []string
}

func clusterCanon(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v) // map keys are sorted
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// clusterReadState reads the mount's keys, key, role, config and JWKS from n.
func (n *clusterNode) clusterReadState(t *testing.T, key, role string) clusterState {
	t.Helper()
	var st clusterState
	list := n.clusterData(t, "LIST", mountPath+"/keys", "")
	for _, k := range list["keys"].([]any) {
		st.KeyList = append(st.KeyList, k.(string))
	}
	slices.Sort(st.KeyList)

	kd := n.clusterData(t, http.MethodGet, mountPath+"/keys/"+key, "")
	st.Key.Algorithm, _ = kd["algorithm"].(string)
	versions, ok := kd["versions"].(map[string]any)
	if !ok {
		t.Fatalf("keys/%s on %s: versions is %T", key, n, kd["versions"])
	}
	st.Key.Versions = map[string]clusterVersionView{}
	for v, raw := range versions {
		m, _ := raw.(map[string]any)
		kid, _ := m["kid"].(string)
		st.Key.Versions[v] = clusterVersionView{Kid: kid, PublicKey: clusterCanon(t, m["public_key"])}
	}
	st.Role = clusterCanon(t, n.clusterData(t, http.MethodGet, mountPath+"/roles/"+role, ""))
	st.Config = clusterCanon(t, n.clusterData(t, http.MethodGet, mountPath+"/config", ""))
	_, kids := n.clusterJWKS(t)
	st.JWKSKids = kids
	return st
}

// kids are the key's kids, sorted.
func (k clusterKeyView) kids() []string {
	var out []string
	for _, v := range k.Versions {
		out = append(out, v.Kid)
	}
	slices.Sort(out)
	return out
}

// clusterJWKS fetches /v1/jwt/jwks from n without a token: the body and its
// kids, sorted.
func (n *clusterNode) clusterJWKS(t *testing.T) ([]byte, []string) {
	t.Helper()
	status, body, err := clusterHTTP(clusterClient(30*time.Second), http.MethodGet, n.jwksURL(), "", "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET %s: %d %v: %.300s", n.jwksURL(), status, err, body)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("GET %s: not a JWK Set: %v", n.jwksURL(), err)
	}
	kids := sortedKids(set.Keys)
	return body, kids
}

// clusterVerifyActive posts the token to jwt/verify on n and returns
// "active" (and the reason when inactive).
func (n *clusterNode) clusterVerifyActive(t *testing.T, token string) (bool, string) {
	t.Helper()
	body := clusterCanon(t, map[string]string{"token": token})
	d := n.clusterData(t, http.MethodPost, mountPath+"/verify", body)
	active, ok := d["active"].(bool)
	if !ok {
		t.Fatalf("jwt/verify on %s: active is %T", n, d["active"])
	}
	reason, _ := d["reason"].(string)
	return active, reason
}
