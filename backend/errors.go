package backend

import (
	"errors"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
)

// operationPrefix names this engine's operations in Vault's OpenAPI. Not
// "jwt": Vault's built-in JWT auth method has that prefix, and generated
// clients would get two sets of methods with the same names.
const operationPrefix = "jwt-secrets"

// userError marks an error the caller caused; handlers turn it into a 400.
// Its message names the field and the rule.
type userError struct{ err error }

func (e userError) Error() string { return e.err.Error() }
func (e userError) Unwrap() error { return e.err }

// respondErr maps an error to a handler result. A userError becomes a 400
// naming the problem. A refused write on a read-only node (isReadOnly) is
// returned as logical.ErrReadOnly itself, unlogged, so Vault forwards the
// request to the active node. Anything else is an internal
// failure: logged with key/values (never secrets) and returned, which Vault
// reports as a 500.
func (b *backend) respondErr(err error, msg string, kv ...any) (*logical.Response, error) {
	var (
		ue    userError
		coded logical.HTTPCodedError
	)
	switch {
	case errors.As(err, &ue):
		return logical.ErrorResponse(ue.Error()), logical.ErrInvalidRequest
	case isReadOnly(err):
		// Bare, exactly as Vault expects it.
		return nil, logical.ErrReadOnly
	case errors.As(err, &coded):
		// A failure upstream (KMS throttled or down, a key KMS refuses):
		// the status says what kind; Vault passes it to the caller.
		b.Logger().Warn(msg, append(kv, "status", coded.Code(), "error", err)...)
		return nil, coded
	}
	b.Logger().Error(msg, append(kv, "error", err)...)
	return nil, err
}

// badRequest is a 400 with a message naming the field and the rule.
func badRequest(format string, args ...any) (*logical.Response, error) {
	return logical.ErrorResponse(format, args...), logical.ErrInvalidRequest
}

// isReadOnly reports whether err is a write that storage refused because
// this node is read-only (a performance standby). In a plugin, storage is
// the SDK's gRPC client, which returns the refusal as errors.New with
// logical.ErrReadOnly's text (sdk plugin/grpc_storage.go), so errors.Is
// alone never matches it; HashiCorp's own plugins match the text too.
func isReadOnly(err error) bool {
	return err != nil && (errors.Is(err, logical.ErrReadOnly) || strings.Contains(err.Error(), logical.ErrReadOnly.Error()))
}
