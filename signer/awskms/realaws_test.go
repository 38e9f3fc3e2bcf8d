//go:build awsreal

package awskms_test

// The opt-in test against real AWS KMS. It is not part of `make test` or
// CI (no AWS is reachable there); run it by hand with credentials in the
// usual places and the ARN of one asymmetric SIGN_VERIFY key per algorithm
// you want checked:
//
//	AWS_REGION=eu-west-1 \
//	JWT_TEST_KMS_ES256=arn:aws:kms:eu-west-1:111122223333:key/... \
//	JWT_TEST_KMS_PS256=arn:... \
//	go test -tags awsreal -run TestRealAWS -v ./signer/awskms/
//
// Each key gets the conformance checks (fixed lengths, strict verification)
// over 32 signatures. See docs/awskms.md for the IAM policy.

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/signertest"
)

func TestRealAWS(t *testing.T) {
	ctx := context.Background()
	client, err := awskms.NewClient(ctx, awskms.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, alg := range signer.Algorithms() {
		arn := os.Getenv("JWT_TEST_KMS_" + strings.ToUpper(string(alg)))
		if arn == "" {
			continue
		}
		ran++
		t.Run(string(alg), func(t *testing.T) {
			s, err := awskms.New(ctx, client, nil, arn, alg)
			if err != nil {
				t.Fatal(err)
			}
			if err := signertest.CheckSigner(ctx, s, 32); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v", alg, s.Metrics().Snapshot())
		})
	}
	if ran == 0 {
		t.Fatal("set JWT_TEST_KMS_<ALG> to a KMS key ARN for at least one algorithm")
	}
}
