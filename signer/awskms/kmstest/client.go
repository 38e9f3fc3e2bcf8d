package kmstest

import (
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Credentials NewClient signs with. Unless the server has
// Options.Credentials, any access key ID is accepted (subject to
// Options.AllowedAccessKeys) and the secret is not checked.
const (
	AccessKeyID     = "AKIDTEST"
	SecretAccessKey = "secret"
)

// NewClient returns the real SDK client for the kmstest server at url, in
// DefaultRegion with static credentials. optFns adjust it, after the
// defaults: o.Region for a server in another region, o.Retryer =
// aws.NopRetryer{} to see every fault.
func NewClient(url string, optFns ...func(*kms.Options)) *kms.Client {
	cfg := aws.Config{
		Region:      DefaultRegion,
		Credentials: credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	}
	fns := append([]func(*kms.Options){func(o *kms.Options) { o.BaseEndpoint = aws.String(url) }}, optFns...)
	return kms.NewFromConfig(cfg, fns...)
}

// IsolateAWSEnvironment keeps the AWS SDK in a test away from the machine's
// AWS variables, shared config files and credential sources (web identity,
// container credentials, the EC2 instance metadata service), so a client
// built with the SDK's default machinery (awskms.NewClient) sees only what
// the test gives it.
func IsolateAWSEnvironment(t testing.TB) {
	t.Helper()
	for _, v := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
}
