package awskms

import (
	"fmt"
	"regexp"
)

// The forms of a KMS key reference that Sign, DescribeKey and GetPublicKey
// accept. AWS documents them under "KeyId"; aliases starting alias/aws/ are
// AWS managed keys, which cannot sign.
var (
	keyIDRe    = regexp.MustCompile(`^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$`)
	keyARNRe   = regexp.MustCompile(`^arn:aws(?:-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:key/(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$`)
	aliasRe    = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)
	aliasARNRe = regexp.MustCompile(`^arn:aws(?:-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:alias/[a-zA-Z0-9/_-]{1,250}$`)
)

// ValidateKeyRef checks that ref is a KMS key ID, key ARN, alias name or
// alias ARN, and not an AWS managed alias.
func ValidateKeyRef(ref string) error {
	switch {
	case keyIDRe.MatchString(ref), keyARNRe.MatchString(ref):
		return nil
	case aliasRe.MatchString(ref), aliasARNRe.MatchString(ref):
		if regexp.MustCompile(`(^|:)alias/aws/`).MatchString(ref) {
			return fmt.Errorf("%w: %q is an AWS managed key alias; those cannot sign", ErrInvalidKeyRef, ref)
		}
		return nil
	}
	return fmt.Errorf("%w: %q is not a KMS key ID (uuid or mrk-...), key ARN, alias/<name> or alias ARN", ErrInvalidKeyRef, ref)
}

// isKeyARN is the one test of a key ARN: New applies it to the ARN
// DescribeKey resolves a reference to, FromPublicKey to the stored one, so
// a key New accepts can always be loaded again.
func isKeyARN(arn string) bool { return keyARNRe.MatchString(arn) }
