package awskms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// ClientConfig says how to reach KMS. Everything is optional: with no
// credentials the SDK's default chain is used (environment, shared config,
// web identity, ECS/EC2 instance role).
type ClientConfig struct {
	Region string
	// Endpoint overrides the KMS endpoint, for a VPC endpoint or a test
	// server.
	Endpoint string
	// Static credentials; SecretAccessKey is never logged or returned.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// RoleARN, if set, is assumed (with the credentials above, or the
	// default chain) and its temporary credentials sign the calls.
	RoleARN string
	// MaxAttempts is the SDK retryer's attempts per call, retries included
	// (default 3). Each call's total time is bounded by the Governor's
	// CallTimeout.
	MaxAttempts int
}

// NewClient builds a KMS client with aws-sdk-go-v2's own configuration and
// credential machinery.
func NewClient(ctx context.Context, c ClientConfig) (*kms.Client, error) {
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return nil, errors.New("access key and secret key must be given together")
	}
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = 2 * time.Second
			})
		}),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: set region in the configuration or AWS_REGION")
	}
	if c.RoleARN != "" {
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), c.RoleARN,
			func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = "vault-plugin-secrets-jwt" }))
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	}), nil
}
