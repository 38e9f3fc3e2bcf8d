package kmstest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// jwsAlg is the JWS algorithm each KMS algorithm produces, for checking
// signatures with the project's strict verifier. ED25519_PH_SHA_512 has
// none: JWS EdDSA is pure Ed25519.
var jwsAlg = map[string]signer.Algorithm{
	"RSASSA_PKCS1_V1_5_SHA_256": signer.RS256,
	"RSASSA_PKCS1_V1_5_SHA_384": signer.RS384,
	"RSASSA_PKCS1_V1_5_SHA_512": signer.RS512,
	"RSASSA_PSS_SHA_256":        signer.PS256,
	"RSASSA_PSS_SHA_384":        signer.PS384,
	"RSASSA_PSS_SHA_512":        signer.PS512,
	"ECDSA_SHA_256":             signer.ES256,
	"ECDSA_SHA_384":             signer.ES384,
	"ECDSA_SHA_512":             signer.ES512,
	"ED25519_SHA_512":           signer.EdDSA,
}

var rsaAlgsAWS = []string{
	"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
	"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
}

func rsaBits(bits int) func(crypto.PublicKey) error {
	return func(pub crypto.PublicKey) error {
		k, ok := pub.(*rsa.PublicKey)
		if !ok || k.N.BitLen() != bits {
			return fmt.Errorf("public key is %T, want %d-bit RSA", pub, bits)
		}
		return nil
	}
}

func ecCurve(c elliptic.Curve) func(crypto.PublicKey) error {
	return func(pub crypto.PublicKey) error {
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != c {
			return fmt.Errorf("public key is %T, want ECDSA on %s", pub, c.Params().Name)
		}
		return nil
	}
}

func isEd25519(pub crypto.PublicKey) error {
	if _, ok := pub.(ed25519.PublicKey); !ok {
		return fmt.Errorf("public key is %T, want Ed25519", pub)
	}
	return nil
}

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func algStrings(in []types.SigningAlgorithmSpec) []string {
	out := make([]string, len(in))
	for i, a := range in {
		out[i] = string(a)
	}
	return out
}

// TestKeySpecs drives every key spec through the real SDK: create, find by
// every kind of reference, fetch the public key, sign with every algorithm
// (checked by signer.Verify) and verify.
func TestKeySpecs(t *testing.T) {
	clk := newClock()
	_, url := NewTestServer(t, Options{Now: clk.Now})
	c := NewClient(url)

	tests := []struct {
		spec     string
		algs     []string // as AWS lists them
		checkPub func(crypto.PublicKey) error
	}{
		{"RSA_2048", rsaAlgsAWS, rsaBits(2048)},
		{"RSA_3072", rsaAlgsAWS, rsaBits(3072)},
		{"RSA_4096", rsaAlgsAWS, rsaBits(4096)},
		{"ECC_NIST_P256", []string{"ECDSA_SHA_256"}, ecCurve(elliptic.P256())},
		{"ECC_NIST_P384", []string{"ECDSA_SHA_384"}, ecCurve(elliptic.P384())},
		{"ECC_NIST_P521", []string{"ECDSA_SHA_512"}, ecCurve(elliptic.P521())},
		{"ECC_NIST_EDWARDS25519", []string{"ED25519_SHA_512", "ED25519_PH_SHA_512"}, isEd25519},
	}
	if got, want := len(tests), len(KeySpecs()); got != want {
		t.Fatalf("test covers %d specs, server implements %d: %v", got, want, KeySpecs())
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			created, err := c.CreateKey(ctx, &kms.CreateKeyInput{
				KeySpec:     types.KeySpec(tt.spec),
				KeyUsage:    types.KeyUsageTypeSignVerify,
				Description: aws.String("key for " + tt.spec),
				Tags:        []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("jwt")}},
			})
			if err != nil {
				t.Fatalf("CreateKey: %v", err)
			}
			md := created.KeyMetadata
			id := aws.ToString(md.KeyId)
			arn := "arn:aws:kms:us-east-1:111122223333:key/" + id
			if !keyIDPattern.MatchString(id) {
				t.Errorf("KeyId %q is not a UUID", id)
			}
			checks := []struct {
				name      string
				got, want any
			}{
				{"Arn", aws.ToString(md.Arn), arn},
				{"KeySpec", md.KeySpec, types.KeySpec(tt.spec)},
				{"KeyUsage", md.KeyUsage, types.KeyUsageTypeSignVerify},
				{"KeyState", md.KeyState, types.KeyStateEnabled},
				{"Enabled", md.Enabled, true},
				{"KeyManager", md.KeyManager, types.KeyManagerTypeCustomer},
				{"Origin", md.Origin, types.OriginTypeAwsKms},
				{"AWSAccountId", aws.ToString(md.AWSAccountId), "111122223333"},
				{"Description", aws.ToString(md.Description), "key for " + tt.spec},
				{"CreationDate", aws.ToTime(md.CreationDate).UTC(), clk.Now()},
				{"DeletionDate", md.DeletionDate, (*time.Time)(nil)},
				{"SigningAlgorithms", strings.Join(algStrings(md.SigningAlgorithms), ","), strings.Join(tt.algs, ",")},
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("KeyMetadata.%s = %v, want %v", ck.name, ck.got, ck.want)
				}
			}

			aliasName := "alias/" + strings.ToLower(tt.spec)
			if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(aliasName), TargetKeyId: aws.String(id)}); err != nil {
				t.Fatalf("CreateAlias: %v", err)
			}
			refs := []string{id, arn, aliasName, "arn:aws:kms:us-east-1:111122223333:" + aliasName}
			for _, ref := range refs {
				out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)})
				if err != nil {
					t.Errorf("DescribeKey(%s): %v", ref, err)
					continue
				}
				if got := aws.ToString(out.KeyMetadata.KeyId); got != id {
					t.Errorf("DescribeKey(%s).KeyId = %s, want %s", ref, got, id)
				}
			}

			var der []byte
			for _, ref := range refs {
				out, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(ref)})
				if err != nil {
					t.Fatalf("GetPublicKey(%s): %v", ref, err)
				}
				if got := aws.ToString(out.KeyId); got != arn {
					t.Errorf("GetPublicKey(%s).KeyId = %s, want the key ARN %s", ref, got, arn)
				}
				if out.KeySpec != types.KeySpec(tt.spec) || out.KeyUsage != types.KeyUsageTypeSignVerify {
					t.Errorf("GetPublicKey(%s): KeySpec %s, KeyUsage %s", ref, out.KeySpec, out.KeyUsage)
				}
				if got := strings.Join(algStrings(out.SigningAlgorithms), ","); got != strings.Join(tt.algs, ",") {
					t.Errorf("GetPublicKey(%s).SigningAlgorithms = %s, want %v", ref, got, tt.algs)
				}
				if der != nil && !bytes.Equal(der, out.PublicKey) {
					t.Errorf("GetPublicKey(%s) returned a different key", ref)
				}
				der = out.PublicKey
			}
			pub, err := x509.ParsePKIXPublicKey(der)
			if err != nil {
				t.Fatalf("ParsePKIXPublicKey: %v", err)
			}
			if err := tt.checkPub(pub); err != nil {
				t.Fatal(err)
			}

			for _, alg := range tt.algs {
				t.Run(alg, func(t *testing.T) {
					checkSignVerify(t, c, aliasName, alg, pub)
				})
			}
		})
	}
}

// checkSignVerify signs with alg in every message type AWS allows for it,
// checks each signature offline, and checks the Verify operation accepts
// it and rejects it tampered.
func checkSignVerify(t *testing.T, c *kms.Client, keyRef, alg string, pub crypto.PublicKey) {
	t.Helper()
	ctx := t.Context()
	msg := []byte("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0In0") // a JWS signing input

	type input struct {
		messageType types.MessageType
		message     []byte
		// offline verifies sig with something other than the server.
		offline func(sig []byte) error
	}
	var inputs []input
	switch {
	case alg == "ED25519_PH_SHA_512":
		// DIGEST only; AWS applies the Ed25519ph prehash to the digest
		// it is given, so the signed message M is the digest.
		d := sha512.Sum512(msg)
		inputs = append(inputs, input{types.MessageTypeDigest, d[:], func(sig []byte) error {
			ph := sha512.Sum512(d[:])
			return ed25519.VerifyWithOptions(pub.(ed25519.PublicKey), ph[:], sig, &ed25519.Options{Hash: crypto.SHA512})
		}})
	case alg == "ED25519_SHA_512":
		inputs = append(inputs, input{types.MessageTypeRaw, msg, func(sig []byte) error {
			return signer.Verify(signer.EdDSA, pub, msg, sig)
		}})
	default:
		ja := jwsAlg[alg]
		jose := func(sig []byte) ([]byte, error) {
			if strings.HasPrefix(alg, "ECDSA") {
				return signer.ECDSAToJOSE(ja, sig)
			}
			return sig, nil
		}
		offline := func(sig []byte) error {
			js, err := jose(sig)
			if err != nil {
				return err
			}
			return signer.Verify(ja, pub, msg, js)
		}
		inputs = append(inputs,
			input{types.MessageTypeDigest, ja.Info().Digest(msg), offline},
			input{types.MessageTypeRaw, msg, offline},
		)
	}

	for _, in := range inputs {
		out, err := c.Sign(ctx, &kms.SignInput{
			KeyId:            aws.String(keyRef),
			Message:          in.message,
			MessageType:      in.messageType,
			SigningAlgorithm: types.SigningAlgorithmSpec(alg),
		})
		if err != nil {
			t.Fatalf("Sign %s: %v", in.messageType, err)
		}
		if out.SigningAlgorithm != types.SigningAlgorithmSpec(alg) || !strings.Contains(aws.ToString(out.KeyId), ":key/") {
			t.Errorf("Sign %s: KeyId %s, SigningAlgorithm %s", in.messageType, aws.ToString(out.KeyId), out.SigningAlgorithm)
		}
		if err := in.offline(out.Signature); err != nil {
			t.Errorf("Sign %s: signature does not verify offline: %v", in.messageType, err)
		}

		verify := func(message, sig []byte) (*kms.VerifyOutput, error) {
			return c.Verify(ctx, &kms.VerifyInput{
				KeyId:            aws.String(keyRef),
				Message:          message,
				MessageType:      in.messageType,
				Signature:        sig,
				SigningAlgorithm: types.SigningAlgorithmSpec(alg),
			})
		}
		v, err := verify(in.message, out.Signature)
		if err != nil || !v.SignatureValid {
			t.Errorf("Verify %s of a good signature: %+v, %v", in.messageType, v, err)
		}
		badSig := slices.Clone(out.Signature)
		badSig[len(badSig)/2] ^= 0x01
		badMsg := slices.Clone(in.message)
		badMsg[0] ^= 0x01
		for name, try := range map[string][2][]byte{"signature": {in.message, badSig}, "message": {badMsg, out.Signature}} {
			_, err := verify(try[0], try[1])
			if !isA[*types.KMSInvalidSignatureException](err) {
				t.Errorf("Verify %s with a tampered %s: got %v, want KMSInvalidSignatureException", in.messageType, name, err)
			}
		}
	}
}

// TestAddKeyForTest checks a key brought by the test signs as itself.
func TestAddKeyForTest(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	c := NewClient(url)
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, arn, err := s.AddKeyForTest(priv)
	if err != nil {
		t.Fatal(err)
	}
	if want := "arn:aws:kms:us-east-1:111122223333:key/" + id; arn != want {
		t.Errorf("arn = %s, want %s", arn, want)
	}
	msg := []byte("hello")
	out, err := c.Sign(t.Context(), &kms.SignInput{KeyId: aws.String(id), Message: msg, MessageType: types.MessageTypeRaw, SigningAlgorithm: types.SigningAlgorithmSpecEd25519Sha512})
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, out.Signature) {
		t.Error("signature does not verify under the added key")
	}

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddKeyForTest(rsa1024); err == nil {
		t.Error("AddKeyForTest accepted a 1024-bit RSA key, which KMS has no spec for")
	}
	if _, _, err := s.CreateKeyForTest("SYMMETRIC_DEFAULT"); err == nil {
		t.Error("CreateKeyForTest accepted SYMMETRIC_DEFAULT")
	}
	id, arn, err = s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil || !strings.HasSuffix(arn, ":key/"+id) {
		t.Fatalf("CreateKeyForTest = %s, %s, %v", id, arn, err)
	}
}

// TestAdministration covers the key and alias management operations.
func TestAdministration(t *testing.T) {
	clk := newClock()
	s, url := NewTestServer(t, Options{Now: clk.Now, Region: "eu-west-1", Account: "444455556666"})
	c := NewClient(url, func(o *kms.Options) { o.Region = "eu-west-1" })
	ctx := t.Context()
	a := createKey(t, c, "ECC_NIST_P256")
	b := createKey(t, c, "ECC_NIST_P256")
	if s.Region() != "eu-west-1" || s.Account() != "444455556666" {
		t.Fatalf("Region, Account = %s, %s", s.Region(), s.Account())
	}

	// Aliases: create, list, retarget, delete.
	for _, name := range []string{"alias/one", "alias/two"} {
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(name), TargetKeyId: aws.String(a)}); err != nil {
			t.Fatalf("CreateAlias %s: %v", name, err)
		}
	}
	list := func(keyID string) string {
		t.Helper()
		in := &kms.ListAliasesInput{}
		if keyID != "" {
			in.KeyId = aws.String(keyID)
		}
		out, err := c.ListAliases(ctx, in)
		if err != nil {
			t.Fatalf("ListAliases: %v", err)
		}
		if out.Truncated {
			t.Error("ListAliases: Truncated")
		}
		var got []string
		for _, e := range out.Aliases {
			if want := "arn:aws:kms:eu-west-1:444455556666:" + aws.ToString(e.AliasName); aws.ToString(e.AliasArn) != want {
				t.Errorf("AliasArn = %s, want %s", aws.ToString(e.AliasArn), want)
			}
			got = append(got, aws.ToString(e.AliasName)+"->"+aws.ToString(e.TargetKeyId))
		}
		return strings.Join(got, " ")
	}
	if got, want := list(""), "alias/one->"+a+" alias/two->"+a; got != want {
		t.Errorf("ListAliases = %s, want %s", got, want)
	}
	if _, err := c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/two"), TargetKeyId: aws.String(b)}); err != nil {
		t.Fatalf("UpdateAlias: %v", err)
	}
	if got, want := list(b), "alias/two->"+b; got != want {
		t.Errorf("ListAliases(b) = %s, want %s", got, want)
	}
	out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/two")})
	if err != nil || aws.ToString(out.KeyMetadata.KeyId) != b {
		t.Errorf("DescribeKey(alias/two) after UpdateAlias: %v", err)
	}
	if _, err := c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/one")}); err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	if got, want := list(a), ""; got != want {
		t.Errorf("ListAliases(a) after DeleteAlias = %q, want none", got)
	}

	// Tags.
	if _, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(a), Tags: []types.Tag{
		{TagKey: aws.String("b"), TagValue: aws.String("2")}, {TagKey: aws.String("a"), TagValue: aws.String("1")},
	}}); err != nil {
		t.Fatalf("TagResource: %v", err)
	}
	if _, err := c.UntagResource(ctx, &kms.UntagResourceInput{KeyId: aws.String(a), TagKeys: []string{"b"}}); err != nil {
		t.Fatalf("UntagResource: %v", err)
	}
	tags, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(a)})
	if err != nil {
		t.Fatalf("ListResourceTags: %v", err)
	}
	if len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].TagKey) != "a" || aws.ToString(tags.Tags[0].TagValue) != "1" {
		t.Errorf("tags after TagResource and UntagResource = %+v, want a=1", tags.Tags)
	}

	// Disable, enable.
	state := func(id string) types.KeyState {
		t.Helper()
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			t.Fatalf("DescribeKey: %v", err)
		}
		return out.KeyMetadata.KeyState
	}
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(a)}); err != nil {
		t.Fatal(err)
	}
	if got := state(a); got != types.KeyStateDisabled {
		t.Errorf("state after DisableKey = %s", got)
	}
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(a)}); err != nil {
		t.Fatal(err)
	}
	if got := state(a); got != types.KeyStateEnabled {
		t.Errorf("state after EnableKey = %s", got)
	}

	// Deletion: scheduled, cancelled (the key comes back disabled),
	// scheduled again and carried out when the window passes.
	sched, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(a), PendingWindowInDays: aws.Int32(7)})
	if err != nil {
		t.Fatalf("ScheduleKeyDeletion: %v", err)
	}
	wantDeletion := clk.Now().Add(7 * 24 * time.Hour)
	if !aws.ToTime(sched.DeletionDate).Equal(wantDeletion) || sched.KeyState != types.KeyStatePendingDeletion || aws.ToInt32(sched.PendingWindowInDays) != 7 {
		t.Errorf("ScheduleKeyDeletion = %v, %s, %d; want %v, PendingDeletion, 7", aws.ToTime(sched.DeletionDate), sched.KeyState, aws.ToInt32(sched.PendingWindowInDays), wantDeletion)
	}
	md, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(a)})
	if err != nil {
		t.Fatal(err)
	}
	if md.KeyMetadata.Enabled || !aws.ToTime(md.KeyMetadata.DeletionDate).Equal(wantDeletion) || aws.ToInt32(md.KeyMetadata.PendingDeletionWindowInDays) != 7 {
		t.Errorf("pending key's metadata: Enabled %v, DeletionDate %v, window %d", md.KeyMetadata.Enabled, md.KeyMetadata.DeletionDate, aws.ToInt32(md.KeyMetadata.PendingDeletionWindowInDays))
	}
	if _, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(a)}); err != nil {
		t.Fatalf("CancelKeyDeletion: %v", err)
	}
	if got := state(a); got != types.KeyStateDisabled {
		t.Errorf("state after CancelKeyDeletion = %s, want Disabled", got)
	}
	sched, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(a)})
	if err != nil || aws.ToInt32(sched.PendingWindowInDays) != 30 {
		t.Fatalf("ScheduleKeyDeletion with the default window: %+v, %v", sched, err)
	}
	clk.Advance(30*24*time.Hour - time.Second)
	if got := state(a); got != types.KeyStatePendingDeletion {
		t.Errorf("a second before the deletion date: state %s", got)
	}
	keys, err := c.ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil || len(keys.Keys) != 2 {
		t.Errorf("ListKeys before deletion: %d keys, %v; want 2", len(keys.Keys), err)
	}
	clk.Advance(time.Second)
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(a)})
	if !isA[*types.NotFoundException](err) {
		t.Errorf("DescribeKey after the deletion date: %v, want NotFoundException", err)
	}
	keys, err = c.ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil || len(keys.Keys) != 1 || aws.ToString(keys.Keys[0].KeyId) != b {
		t.Errorf("ListKeys after deletion: %+v, %v; want only %s", keys, err, b)
	}
}

// TestConcurrentUse signs from many goroutines while the key is disabled
// and enabled and faults change, for the race detector; every answer must
// be a good signature or DisabledException.
func TestConcurrentUse(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	c := NewClient(url, noRetry)
	id := createKey(t, c, "ECC_NIST_P256")
	pubOut, err := c.GetPublicKey(t.Context(), &kms.GetPublicKeyInput{KeyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(pubOut.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("concurrent")
	digest := signer.ES256.Info().Digest(msg)

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Go(func() {
			for range 10 {
				out, err := c.Sign(t.Context(), &kms.SignInput{KeyId: aws.String(id), Message: digest, MessageType: types.MessageTypeDigest, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
				switch {
				case isA[*types.DisabledException](err):
				case err != nil:
					errs <- fmt.Errorf("goroutine %d: %w", g, err)
				default:
					js, err := signer.ECDSAToJOSE(signer.ES256, out.Signature)
					if err == nil {
						err = signer.Verify(signer.ES256, pub, msg, js)
					}
					if err != nil {
						errs <- fmt.Errorf("goroutine %d: bad signature: %w", g, err)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			var err error
			if i%2 == 1 {
				_, err = c.EnableKey(t.Context(), &kms.EnableKeyInput{KeyId: aws.String(id)})
			} else {
				_, err = c.DisableKey(t.Context(), &kms.DisableKeyInput{KeyId: aws.String(id)})
			}
			if err != nil {
				errs <- err
			}
			s.SetFaults(Faults{Latency: time.Duration(i%3) * time.Millisecond})
			_ = s.Stats()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := s.Stats(); st.Requests["Sign"] != 80 || st.InFlight != 0 || st.MaxInFlight < 2 {
		t.Errorf("stats = %+v; want 80 Sign requests, none in flight, at least 2 at once", st)
	}
}
