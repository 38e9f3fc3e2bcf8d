package awskms

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Errors a caller can act on, tested with errors.Is. Every error from this
// package wraps at most one of them; messages name the KMS key but never
// carry credentials or key material.
var (
	ErrInvalidKeyRef  = errors.New("invalid KMS key reference")
	ErrKeyUnusable    = errors.New("KMS key cannot sign for this algorithm")
	ErrAccessDenied   = errors.New("KMS access denied")
	ErrKeyNotFound    = errors.New("KMS key not found")
	ErrKeyDisabled    = errors.New("KMS key is disabled")
	ErrKeyState       = errors.New("KMS key is not usable in its current state (pending deletion or import)")
	ErrThrottled      = errors.New("KMS throttled the request; retry later")
	ErrTimeout        = errors.New("KMS unavailable: no answer in time")
	ErrUnavailable    = errors.New("KMS unavailable")
	ErrMessageTooLong = errors.New("message too long for KMS")
	// ErrNoCredentials means the engine's AWS credentials are missing or
	// unusable: none found, a credential source (credential_process, web
	// identity, STS AssumeRole, SSO, IMDS) failed, or KMS did not accept
	// them (an unknown access key, a bad signature, an expired or invalid
	// session token). KMS was not asked about the key, so it says nothing
	// about KMS's health or the key: the breaker does not count it.
	ErrNoCredentials = errors.New("no usable AWS credentials")
	// ErrRefused is KMS refusing a request for a reason without a
	// sentinel of its own; the message has KMS's error code.
	ErrRefused = errors.New("KMS refused the request")
	// ErrBadSignature means KMS returned a signature that does not verify
	// under the key's public key. It is never turned into a token.
	ErrBadSignature = errors.New("KMS returned a signature that does not verify")
)

// classify maps an SDK error to one of the sentinels above.
func classify(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var (
		notFound  *types.NotFoundException
		disabled  *types.DisabledException
		invState  *types.KMSInvalidStateException
		keyUsage  *types.InvalidKeyUsageException
		apiErr    smithy.APIError
		netErr    net.Error
		sentinels = []error{ErrUnavailable, ErrThrottled, ErrTimeout}
	)
	for _, s := range sentinels {
		if errors.Is(err, s) { // already classified (the breaker's fast failure)
			return err
		}
	}
	switch {
	case errors.Is(err, ErrNoCredentials):
		// Before the context checks: a credential source that ran out of
		// time is still a credentials problem, not KMS failing to answer.
		return fmt.Errorf("%s %s: %w", op, key, err)
	case errors.As(err, &notFound):
		return fmt.Errorf("%s %s: %w", op, key, ErrKeyNotFound)
	case errors.As(err, &disabled):
		return fmt.Errorf("%s %s: %w", op, key, ErrKeyDisabled)
	case errors.As(err, &invState):
		return fmt.Errorf("%s %s: %w", op, key, ErrKeyState)
	case errors.As(err, &keyUsage):
		return fmt.Errorf("%s %s: %w: %s", op, key, ErrKeyUnusable, keyUsage.ErrorMessage())
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: %w", op, key, ErrTimeout)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s %s: %w", op, key, err)
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode() {
		case "AccessDeniedException":
			return fmt.Errorf("%s %s: %w (%s)", op, key, ErrAccessDenied, apiErr.ErrorCode())
		case "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
			"IncompleteSignatureException", "MissingAuthenticationTokenException":
			// KMS did not get as far as the key: it refused the signer.
			return fmt.Errorf("%s %s: %w: KMS refused them (%s)", op, key, ErrNoCredentials, apiErr.ErrorCode())
		case "ThrottlingException", "LimitExceededException", "RequestLimitExceeded":
			return fmt.Errorf("%s %s: %w", op, key, ErrThrottled)
		case "ValidationException":
			return fmt.Errorf("%s %s: %w: %s", op, key, ErrKeyUnusable, apiErr.ErrorMessage())
		}
		// The SDK marks errors it has no type for as FaultUnknown, so the
		// HTTP status decides: a 4xx is KMS refusing this request (KMS is
		// up), a 5xx is KMS failing.
		var respErr *smithyhttp.ResponseError
		if apiErr.ErrorFault() == smithy.FaultClient ||
			(errors.As(err, &respErr) && respErr.HTTPStatusCode() >= 400 && respErr.HTTPStatusCode() < 500) {
			return fmt.Errorf("%s %s: %w: %s: %s", op, key, ErrRefused, apiErr.ErrorCode(), apiErr.ErrorMessage())
		}
		return fmt.Errorf("%s %s: %w (%s)", op, key, ErrUnavailable, apiErr.ErrorCode())
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("%s %s: %w", op, key, ErrTimeout)
	}
	return fmt.Errorf("%s %s: %w: %v", op, key, ErrUnavailable, err)
}

// unavailable reports whether err says KMS itself is down or failing, as
// opposed to refusing this request: what the circuit breaker counts.
func unavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout)
}
