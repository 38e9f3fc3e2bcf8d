package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestSign(t *testing.T) {
	ctx := context.Background()
	conf := logical.TestBackendConfig()
	conf.StorageView = &logical.InmemStorage{}
	lb, err := factory(ctx, conf)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.(*backend)
	digest := sha256.Sum256(b.input)
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			resp, err := b.HandleRequest(ctx, &logical.Request{
				Operation: logical.UpdateOperation, Path: "sign", Storage: conf.StorageView,
				Data: map[string]any{"alg": alg},
			})
			if err != nil || resp.IsError() {
				t.Fatalf("sign: %v %v", err, resp)
			}
			sig, err := base64.RawURLEncoding.DecodeString(resp.Data["signature"].(string))
			if err != nil {
				t.Fatalf("signature is not base64url: %v", err)
			}
			ok := false
			switch k := b.keys[alg].Public().(type) {
			case *ecdsa.PublicKey:
				ok = len(sig) == 64 && ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
			case ed25519.PublicKey:
				ok = ed25519.Verify(k, b.input, sig)
			case *rsa.PublicKey:
				ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
			}
			if !ok {
				t.Errorf("%s signature does not verify", alg)
			}
		})
	}
	resp, err := b.HandleRequest(ctx, &logical.Request{
		Operation: logical.UpdateOperation, Path: "sign", Storage: conf.StorageView,
		Data: map[string]any{"alg": "HS256"},
	})
	if err == nil || !resp.IsError() {
		t.Errorf("alg HS256 accepted: %v %v", err, resp)
	}
}
