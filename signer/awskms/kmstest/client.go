package kmstest

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Credentials NewClient signs with. Any access key ID is accepted unless
// Options.AllowedAccessKeys says otherwise; the secret is never checked.
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
