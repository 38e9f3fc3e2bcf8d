package kmstest

import (
	"fmt"
	"net/http"
)

// Error codes, as the __type of an error body and X-Amzn-ErrorType. The
// SDK turns the ones KMS models (types.NotFoundException, ...) into typed
// errors; the rest (ThrottlingException, ValidationException,
// AccessDeniedException, ...) arrive as *smithy.GenericAPIError with that
// code.
const (
	errNotFound            = "NotFoundException"
	errDisabled            = "DisabledException"
	errInvalidState        = "KMSInvalidStateException"
	errAccessDenied        = "AccessDeniedException"
	errThrottling          = "ThrottlingException"
	errValidation          = "ValidationException"
	errInvalidKeyUsage     = "InvalidKeyUsageException"
	errInvalidSignature    = "KMSInvalidSignatureException"
	errAlreadyExists       = "AlreadyExistsException"
	errUnsupported         = "UnsupportedOperationException"
	errUnknownOperation    = "UnknownOperationException"
	errSerialization       = "SerializationException"
	errTag                 = "TagException"
	errDryRun              = "DryRunOperationException"
	errMissingAuth         = "MissingAuthenticationTokenException"
	errIncompleteSignature = "IncompleteSignatureException"
	errInvalidAuthSig      = "InvalidSignatureException"
	errUnrecognizedClient  = "UnrecognizedClientException"
	errExpiredToken        = "ExpiredTokenException"
	errInternal            = "KMSInternalException"
	errUnavailable         = "ServiceUnavailableException"
)

// apiError is an answer in AWS's JSON error shape.
type apiError struct {
	code string
	msg  string
}

func errorf(code, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// status is the HTTP status AWS KMS answers the error with: 400 for every
// client error (KMS does not use the 404/409 the Smithy model declares),
// 412 for a dry run, 500 and 503 for its own faults.
func (e *apiError) status() int {
	switch e.code {
	case errInternal:
		return http.StatusInternalServerError
	case errUnavailable:
		return http.StatusServiceUnavailable
	case errDryRun:
		return http.StatusPreconditionFailed
	}
	return http.StatusBadRequest
}
