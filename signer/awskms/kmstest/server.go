package kmstest

import (
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults for Options.
const (
	DefaultRegion  = "us-east-1"
	DefaultAccount = "111122223333"
)

// maxBody bounds a request body; the largest real request (Verify with a
// 4096-byte message and a 6144-byte signature) is far smaller.
const maxBody = 1 << 20

// Options configure a Server. The zero value is usable.
type Options struct {
	// Region and Account make up ARNs; the SigV4 credential scope must
	// name Region. Defaults: DefaultRegion, DefaultAccount.
	Region  string
	Account string
	// Credentials, when not empty, turns on SigV4 verification: a
	// request must be signed with one of them, as AWS checks it. An access
	// key ID not listed gets UnrecognizedClientException, a signature that
	// is not the one its secret key makes InvalidSignatureException, a
	// session token other than the credential's (missing, wrong, or sent
	// for a credential without one) UnrecognizedClientException, and a
	// credential past its Expires ExpiredTokenException. Empty: the
	// signature is not checked and any access key ID is known.
	Credentials []Credential
	// AllowedAccessKeys, when not empty, lists the access key IDs that may
	// call KMS; any other gets AccessDeniedException, like a principal
	// without kms:* permissions. Empty allows any access key ID. With
	// Credentials, a key must be in both to be let in.
	AllowedAccessKeys []string
	// Now is the clock for creation and deletion dates; a key whose
	// deletion date has passed no longer exists. Default: time.Now.
	Now func() time.Time
	// Control serves the control endpoint under /_kmstest/ (see
	// ServeHTTP). cmd/kmstest turns it on.
	Control bool
	// Faults are the faults in force from the start.
	Faults Faults
}

// Server is a KMS endpoint; it implements http.Handler and is safe for
// concurrent use.
type Server struct {
	region, account string
	allowed         map[string]bool
	creds           map[string]Credential // by access key ID; nil: signatures are not checked
	now             func() time.Time
	control         bool

	mu      sync.RWMutex
	keys    map[string]*key   // by key ID
	aliases map[string]*alias // by alias name, "alias/..."

	faults faultState
	stats  statsState

	// quit ends every Latency wait, so a server can shut down while a
	// request sleeps.
	quit     chan struct{}
	quitOnce sync.Once
}

type alias struct {
	name    string
	keyID   string
	created time.Time
	updated time.Time
}

// New returns a server with no keys. It panics if opts.Faults is invalid.
func New(opts Options) *Server {
	s := &Server{
		region:  opts.Region,
		account: opts.Account,
		now:     opts.Now,
		control: opts.Control,
		keys:    map[string]*key{},
		aliases: map[string]*alias{},
		quit:    make(chan struct{}),
	}
	if s.region == "" {
		s.region = DefaultRegion
	}
	if s.account == "" {
		s.account = DefaultAccount
	}
	if s.now == nil {
		s.now = time.Now
	}
	if len(opts.AllowedAccessKeys) > 0 {
		s.allowed = map[string]bool{}
		for _, id := range opts.AllowedAccessKeys {
			s.allowed[id] = true
		}
	}
	if len(opts.Credentials) > 0 {
		s.creds = map[string]Credential{}
		for _, c := range opts.Credentials {
			s.creds[c.AccessKeyID] = c
		}
	}
	s.stats.reset()
	s.SetFaults(opts.Faults)
	return s
}

// Credential is a set of AWS credentials a server with Options.Credentials
// accepts.
type Credential struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	// SessionToken, if set, makes these temporary credentials: every
	// request must carry it in X-Amz-Security-Token.
	SessionToken string `json:"session_token,omitempty"`
	// Expires, if set, is when the credentials stop working, by
	// Options.Now.
	Expires time.Time `json:"expires,omitzero"`
}

// NewTestServer serves s on 127.0.0.1 until the test ends and returns it
// with its base URL, for kms.Options.BaseEndpoint.
func NewTestServer(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	s := New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		s.stopWaits()
		ts.Close()
	})
	return s, ts.URL
}

// stopWaits ends every Latency wait, now and later.
func (s *Server) stopWaits() {
	s.quitOnce.Do(func() { close(s.quit) })
}

// Region returns the region in the server's ARNs.
func (s *Server) Region() string { return s.region }

// Account returns the account in the server's ARNs.
func (s *Server) Account() string { return s.account }

// CreateKeyForTest creates an enabled SIGN_VERIFY key of the given KeySpec
// (see KeySpecs), as CreateKey would, and returns its key ID and ARN.
func (s *Server) CreateKeyForTest(spec string) (keyID, arn string, err error) {
	ks, ok := keySpecs[spec]
	if !ok {
		return "", "", fmt.Errorf("kmstest: key spec %q is not one of %v", spec, KeySpecs())
	}
	priv, err := ks.gen()
	if err != nil {
		return "", "", fmt.Errorf("kmstest: generating %s key: %w", spec, err)
	}
	k, err := s.insertKey(ks, priv, "", nil)
	if err != nil {
		return "", "", err
	}
	return k.id, k.arn, nil
}

// AddKeyForTest adds an enabled SIGN_VERIFY key holding priv, which must be
// RSA 2048/3072/4096, ECDSA P-256/384/521 or Ed25519, and returns its key ID
// and ARN. Tests use it to reuse a key rather than generate one (RSA_4096
// takes seconds).
func (s *Server) AddKeyForTest(priv crypto.Signer) (keyID, arn string, err error) {
	spec, err := specOf(priv)
	if err != nil {
		return "", "", err
	}
	k, err := s.insertKey(keySpecs[spec], priv, "", nil)
	if err != nil {
		return "", "", err
	}
	return k.id, k.arn, nil
}

func (s *Server) insertKey(ks keySpec, priv crypto.Signer, description string, tags map[string]string) (*key, error) {
	id := newKeyID()
	k, err := newKey(id, s.arn("key/"+id), ks, priv, s.now(), description)
	if err != nil {
		return nil, err
	}
	for name, v := range tags {
		k.tags[name] = v
	}
	s.mu.Lock()
	s.keys[id] = k
	s.mu.Unlock()
	return k, nil
}

func (s *Server) arn(resource string) string {
	return "arn:aws:kms:" + s.region + ":" + s.account + ":" + resource
}

// resolve finds the key ref names; s.mu must be held. ref is a key ID or key
// ARN, or when withAlias an alias name or alias ARN too: AWS accepts aliases
// only in the operations that use a key, not those that manage one.
func (s *Server) resolve(ref string, withAlias bool) (*key, *apiError) {
	if ref == "" {
		return nil, errorf(errValidation, "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	resource := ref
	if strings.HasPrefix(ref, "arn:") {
		prefix := s.arn("")
		if !strings.HasPrefix(ref, prefix) {
			return nil, errorf(errNotFound, "Invalid arn %s: kmstest serves region %s, account %s", ref, s.region, s.account)
		}
		resource = ref[len(prefix):]
		if !strings.HasPrefix(resource, "key/") && !strings.HasPrefix(resource, "alias/") {
			return nil, errorf(errNotFound, "Invalid arn %s", ref)
		}
	} else if !strings.HasPrefix(ref, "alias/") {
		resource = "key/" + ref
	}
	now := s.now()
	if name, ok := strings.CutPrefix(resource, "key/"); ok {
		k := s.keys[name]
		if k == nil || k.gone(now) {
			return nil, errorf(errNotFound, "Key '%s' does not exist", s.arn("key/"+name))
		}
		return k, nil
	}
	if !withAlias {
		return nil, errorf(errNotFound, "Invalid keyId %s: this operation takes a key ID or key ARN, not an alias", ref)
	}
	a := s.aliases[resource]
	if a == nil {
		return nil, errorf(errNotFound, "Alias %s is not found.", s.arn(resource))
	}
	k := s.keys[a.keyID]
	if k == nil || k.gone(now) {
		return nil, errorf(errNotFound, "Alias %s is not found.", s.arn(resource))
	}
	return k, nil
}

// faulted are the operations Faults apply to: those a signer makes at run
// time. Key administration is never faulted, so a test can set up and
// inspect keys whatever faults are in force.
var faulted = map[string]bool{
	"DescribeKey":  true,
	"GetPublicKey": true,
	"Sign":         true,
	"Verify":       true,
}

// FaultedOperations returns the operations Faults apply to, sorted.
func FaultedOperations() []string {
	out := make([]string, 0, len(faulted))
	for op := range faulted {
		out = append(out, op)
	}
	slices.Sort(out)
	return out
}

const targetPrefix = "TrentService."

// ServeHTTP answers KMS requests: POST / with Content-Type
// application/x-amz-json-1.1, X-Amz-Target TrentService.<Operation> and a
// SigV4 Authorization header, whose signature is checked only with
// Options.Credentials.
//
// With Options.Control it also serves, under /_kmstest/ (a path no AWS
// request uses):
//
//	GET    /_kmstest/faults  the Faults in force, as JSON
//	PUT    /_kmstest/faults  replace them (a missing field is zero)
//	GET    /_kmstest/stats   Stats, as JSON
//	DELETE /_kmstest/stats   reset them; answers the Stats before the reset
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.control && strings.HasPrefix(r.URL.Path, controlPrefix) {
		s.serveControl(w, r)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, isKMS := strings.CutPrefix(target, targetPrefix)
	handler, known := operations[op]
	statsOp := op
	if !isKMS || !known {
		statsOp = "Unknown"
	}
	s.stats.begin(statsOp)
	defer s.stats.end()

	w.Header().Set("X-Amzn-RequestId", newRequestID())
	// Read the body first: only then does net/http notice a client that
	// hangs up, and cancel r.Context() to end a Latency wait.
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if faulted[op] && isKMS {
		if err, answered := s.applyFaults(w, r); answered {
			if err != nil {
				s.writeError(w, err)
			}
			return
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" || !isKMS {
		s.writeError(w, errorf(errUnknownOperation, "kmstest answers only POST / with X-Amz-Target %s<Operation>", targetPrefix))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-amz-json-1.1") {
		s.writeError(w, errorf(errUnknownOperation, "Content-Type %q is not application/x-amz-json-1.1", ct))
		return
	}
	if err := s.authenticate(r, op, body, readErr == nil); err != nil {
		s.writeError(w, err)
		return
	}
	if !known {
		s.writeError(w, errorf(errUnsupported, "kmstest does not implement %s", op))
		return
	}
	if readErr != nil {
		s.writeError(w, errorf(errSerialization, "reading request body: %v", readErr))
		return
	}
	out, aerr := handler(s, body)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	s.writeJSON(w, http.StatusOK, out)
}

// authenticate checks the Authorization header a SigV4 signer
// writes, and with Options.Credentials the signature itself over body (when
// it was read whole):
//
//	AWS4-HMAC-SHA256 Credential=<akid>/<date>/<region>/kms/aws4_request, SignedHeaders=..., Signature=...
func (s *Server) authenticate(r *http.Request, op string, body []byte, whole bool) *apiError {
	h := r.Header.Get("Authorization")
	if h == "" {
		return errorf(errMissingAuth, "Missing Authentication Token")
	}
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return errorf(errIncompleteSignature, "Authorization header requires the AWS4-HMAC-SHA256 algorithm")
	}
	var cred string
	for part := range strings.SplitSeq(rest, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "Credential="); ok {
			cred = v
		}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[0] == "" || scope[4] != "aws4_request" {
		return errorf(errIncompleteSignature, "Authorization header requires 'Credential' parameter of the form <akid>/<date>/<region>/kms/aws4_request, got %q", cred)
	}
	if scope[2] != s.region {
		return errorf(errInvalidAuthSig, "Credential should be scoped to a valid region, not '%s'. kmstest serves '%s'.", scope[2], s.region)
	}
	if scope[3] != "kms" {
		return errorf(errInvalidAuthSig, "Credential should be scoped to correct service: 'kms'.")
	}
	if s.creds != nil && whole {
		if err := s.verifySignature(r, body, scope, authParam(rest, "SignedHeaders"), authParam(rest, "Signature")); err != nil {
			return err
		}
	}
	if s.allowed != nil && !s.allowed[scope[0]] {
		return errorf(errAccessDenied, "User: arn:aws:iam::%s:user/%s is not authorized to perform: kms:%s because no identity-based policy allows the kms:%s action", s.account, scope[0], op, op)
	}
	return nil
}

// authParam returns the value of name= in the Authorization header's
// comma-separated parameters.
func authParam(params, name string) string {
	for part := range strings.SplitSeq(params, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), name+"="); ok {
			return v
		}
	}
	return ""
}

// verifySignature checks a request against Options.Credentials as AWS
// does: the signature is recomputed (sigV4) over the headers the request
// says it signed and the body it carries, with the secret key of its access
// key ID and its credential scope, whose date must be X-Amz-Date's.
func (s *Server) verifySignature(r *http.Request, body []byte, scope []string, signedHeaders, signature string) *apiError {
	c, ok := s.creds[scope[0]]
	if !ok {
		return errorf(errUnrecognizedClient, "The security token included in the request is invalid.")
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Amz-Security-Token")), []byte(c.SessionToken)) != 1 {
		return errorf(errUnrecognizedClient, "The security token included in the request is invalid.")
	}
	if !c.Expires.IsZero() && !s.now().Before(c.Expires) {
		return errorf(errExpiredToken, "The security token included in the request is expired")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if _, err := time.Parse("20060102T150405Z", amzDate); err != nil {
		return errorf(errIncompleteSignature, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	if scope[1] != amzDate[:8] {
		return errorf(errInvalidAuthSig, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", scope[1], amzDate[:8], amzDate)
	}
	if signedHeaders == "" || signature == "" {
		return errorf(errIncompleteSignature, "Authorization header requires 'SignedHeaders' and 'Signature' parameters.")
	}
	if !slices.Contains(strings.Split(signedHeaders, ";"), "host") {
		return errorf(errIncompleteSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	want := sigV4(r, body, c.SecretAccessKey, amzDate, strings.Join(scope[1:], "/"), signedHeaders)
	if subtle.ConstantTimeCompare([]byte(want), []byte(signature)) != 1 {
		return errorf(errInvalidAuthSig, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return nil
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if v == nil {
		// Operations with no output answer an empty body, as AWS does.
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, errorf(errInternal, "encoding response: %v", err))
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	s.stats.failed(e)
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.code, e.msg})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status())
	_, _ = w.Write(b)
}

// drop closes the connection without an answer, as a network failure
// would.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// HTTP/2, or a wrapped writer: the server resets the stream.
	panic(http.ErrAbortHandler)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
