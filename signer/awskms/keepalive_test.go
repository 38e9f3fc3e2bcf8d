package awskms_test

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

// TestKeepAlive: a signer on awskms.NewClient's client keeps its one
// connection to KMS over TLS (HTTP/1.1) for its checks and 200 signatures
// in a row; each new one would be a TLS handshake. NewClient's client
// trusts the test server through AWS_CA_BUNDLE, as the SDK's configuration
// reads it.
func TestKeepAlive(t *testing.T) {
	kmstest.IsolateAWSEnvironment(t)
	srv := kmstest.New(kmstest.Options{Credentials: []kmstest.Credential{testCredential}})
	ts := httptest.NewUnstartedServer(srv)
	var conns atomic.Int64
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	client, err := awskms.NewClient(context.Background(), awskms.ClientConfig{
		Region: "us-east-1", Endpoint: ts.URL,
		AccessKeyID: testCredential.AccessKeyID, SecretAccessKey: testCredential.SecretAccessKey, SessionToken: testCredential.SessionToken,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, arn, err := srv.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	gov := awskms.NewGovernor(awskms.GovernorOptions{MaxRequestsPerSecond: 1e6, Burst: 1000})
	s, err := awskms.New(context.Background(), client, gov, arn, signer.ES256)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if _, err := s.Sign(context.Background(), []byte("a.b")); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("a signer's checks and 200 signatures in a row opened %d connections to KMS, want 1", n)
	}
}
