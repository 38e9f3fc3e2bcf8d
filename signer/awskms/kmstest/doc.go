// Package kmstest is an AWS KMS endpoint for tests. The real aws-sdk-go-v2
// KMS client talks to it over loopback HTTP exactly as to AWS (the AWS JSON
// 1.1 protocol: POST /, X-Amz-Target TrentService.<Operation>, SigV4
// Authorization), and it signs with real keys held in memory. It implements
// the asymmetric signing subset of KMS a JWT signer needs, the key
// administration a test needs around it, and fault injection (latency,
// throttling, 5xx, dropped connections, a request quota, Sign denied for
// one key) for testing a client's retries, rate governor and key checks. It imports nothing from Vault.
//
// # Use
//
// In a test:
//
//	s, url := kmstest.NewTestServer(t, kmstest.Options{})
//	keyID, arn, err := s.CreateKeyForTest("ECC_NIST_P256")
//	client := kmstest.NewClient(url, func(o *kms.Options) { o.Retryer = aws.NopRetryer{} })
//	s.SetFaults(kmstest.Faults{ThrottleRate: 0.2, Latency: 20 * time.Millisecond})
//	st := s.Stats()
//
// Across processes, cmd/kmstest serves one with the control endpoint on
// (Options.Control) and prints KMSTEST_URL=http://127.0.0.1:PORT first;
// Remote{URL: url} changes its Faults and reads its Stats over HTTP.
//
// # Operations
//
// DescribeKey, GetPublicKey, Sign and Verify (the operations Faults apply
// to); CreateKey, ListKeys, DisableKey, EnableKey, ScheduleKeyDeletion,
// CancelKeyDeletion, TagResource, UntagResource, ListResourceTags;
// CreateAlias, UpdateAlias, DeleteAlias, ListAliases. Any other KMS
// operation answers UnsupportedOperationException; a request that is not a
// KMS request at all answers UnknownOperationException.
//
// Keys are SIGN_VERIFY keys of spec RSA_2048, RSA_3072, RSA_4096,
// ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521 or ECC_NIST_EDWARDS25519,
// with AWS's signing algorithms for each. As in AWS: RAW messages are 1 to
// 4096 bytes and hashed by the server; a DIGEST must be exactly the hash's
// length; RSASSA-PSS salts are as long as the hash; ECDSA signatures are
// ASN.1 DER; ED25519_SHA_512 takes only RAW (pure Ed25519 over the
// message) and ED25519_PH_SHA_512 only DIGEST, a SHA-512 digest that is then
// signed as the message M of Ed25519ph, so hashed once more. Key IDs are
// key IDs, key ARNs, alias names ("alias/x") or alias ARNs in the
// operations that use a key (DescribeKey, GetPublicKey, Sign, Verify), and
// key IDs or key ARNs only in those that manage one. Disabled keys answer
// DisabledException and keys pending deletion KMSInvalidStateException to
// GetPublicKey, Sign and Verify; DescribeKey works in every state. A key
// whose deletion date (Options.Now) has passed is gone: NotFoundException.
//
// # Errors
//
// An error is a JSON body {"__type": code, "message": text} with the header
// X-Amzn-ErrorType: code; every answer has X-Amzn-RequestId. Status 400 for
// client errors, as KMS sends (not the 404/409 the Smithy model declares;
// the SDK ignores the status when it decodes), 412 for
// DryRunOperationException, 500 for KMSInternalException, 503 for
// ServiceUnavailableException. Codes KMS models (NotFoundException,
// DisabledException, KMSInvalidStateException, InvalidKeyUsageException,
// KMSInvalidSignatureException, AlreadyExistsException,
// UnsupportedOperationException, KMSInternalException, ...) arrive as the
// SDK's types; ThrottlingException, ValidationException,
// AccessDeniedException and the authentication errors as a
// *smithy.GenericAPIError with that code.
//
// # Differences from AWS a client author must know
//
//   - The SigV4 signature is verified only with Options.Credentials
//     (cmd/kmstest: -credentials-file), recomputed as AWS does over the
//     headers the request lists in SignedHeaders (which must include host)
//     and the body as received, with the credential scope dated X-Amz-Date's
//     day, so the Go SDK's requests and the aws CLI's (botocore signs no
//     content-length) are both checked: then an unknown access key ID answers
//     UnrecognizedClientException, a wrong signature (wrong secret key)
//     InvalidSignatureException, a missing, wrong or unexpected
//     X-Amz-Security-Token UnrecognizedClientException and expired
//     credentials ExpiredTokenException, as AWS does. Without it any access
//     key and secret are accepted. Either way the Authorization header must
//     be present and well formed (else MissingAuthenticationTokenException or
//     IncompleteSignatureException), its credential scope must name the
//     server's region and service kms (else InvalidSignatureException), and
//     with Options.AllowedAccessKeys the access key ID must be listed, else
//     AccessDeniedException, as for a principal without permission. The clock
//     skew AWS allows (5 minutes) is not checked. There are no key policies,
//     grants or grant tokens; Faults.DenySign stands in for a principal that
//     may not sign with one key.
//   - Only the key specs above and KeyUsage SIGN_VERIFY; no symmetric,
//     HMAC, ECC_SECG_P256K1, SM2 or ML-DSA keys, no multi-Region keys,
//     imported key material, custom key stores or rotation. CreateKey
//     without KeyUsage means ENCRYPT_DECRYPT, as in AWS, and is refused
//     with UnsupportedOperationException.
//   - List operations return everything in one page: Limit and Marker are
//     ignored and Truncated is always false.
//   - Throttling is only what Faults inject; AWS's own quotas are not
//     modelled. Faults apply to DescribeKey, GetPublicKey, Sign and Verify
//     only, never to administration, so a test can set up keys under any
//     fault.
//   - Error messages are close to AWS's but not identical; match on the
//     error type or code, never the text.
//   - State is in memory and lost when the server stops; changes are
//     visible at once (AWS is eventually consistent, so a real key can be
//     briefly NotFound just after CreateKey, or usable just after
//     DisableKey).
package kmstest
