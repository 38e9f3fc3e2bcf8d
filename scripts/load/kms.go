package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

// createKMSKey is "load create-kms-key": it makes a SIGN_VERIFY key in a
// kmstest server (cmd/kmstest) with the real AWS SDK and kmstest's test
// credentials, and prints its key ID for jwt/keys/<name> kms_key_id=.
func createKMSKey(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load create-kms-key", flag.ContinueOnError)
	url := fs.String("kmstest-url", "", "kmstest `URL` (loopback), as cmd/kmstest prints it")
	spec := fs.String("spec", "ECC_NIST_P256", "KMS key `spec`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("create-kms-key: unexpected arguments %q", fs.Args())
	}
	if err := checkLoopbackURL(*url); err != nil {
		return fmt.Errorf("create-kms-key -kmstest-url: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := kmstest.NewClient(*url, func(o *kms.Options) { o.HTTPClient = newHTTPClient(2, 10*time.Second) })
	out, err := client.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec:     types.KeySpec(*spec),
		KeyUsage:    types.KeyUsageTypeSignVerify,
		Description: aws.String("vault-plugin-secrets-jwt load harness"),
	})
	if err != nil {
		return fmt.Errorf("create-kms-key: CreateKey %s at %s: %w", *spec, *url, err)
	}
	_, err = fmt.Fprintln(os.Stdout, aws.ToString(out.KeyMetadata.KeyId))
	return err
}

// kmsReport reads kmstest's faults and counters around the run, when
// -kmstest-url is given, to show the latency the awskms target paid and
// that its tokens were signed in KMS.
type kmsReport struct {
	remote *kmstest.Remote
}

func newKMSReport(url string) *kmsReport {
	if url == "" {
		return &kmsReport{}
	}
	return &kmsReport{remote: &kmstest.Remote{URL: url, Client: newHTTPClient(2, 10*time.Second)}}
}

// before zeroes kmstest's counters; trouble is reported, not fatal.
func (k *kmsReport) before(ctx context.Context) {
	if k.remote == nil {
		return
	}
	if _, err := k.remote.ResetStats(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "load: resetting kmstest stats: %v\n", err)
	}
}

// after prints one line: the latency in force and what KMS saw.
func (k *kmsReport) after(ctx context.Context) {
	if k.remote == nil {
		return
	}
	f, err := k.remote.Faults(ctx)
	if err != nil {
		fmt.Printf("kmstest: reading faults: %v\n", err)
		return
	}
	st, err := k.remote.Stats(ctx)
	if err != nil {
		fmt.Printf("kmstest: reading stats: %v\n", err)
		return
	}
	var errs int64
	for _, n := range st.Errors {
		errs += n
	}
	fmt.Printf("kmstest (the awskms key's KMS): latency %s per call; during checks, warm-up and rounds %d Sign calls, %d errors, %d throttled, at most %d in flight\n",
		f.Latency, st.Requests["Sign"], errs, st.Throttled, st.MaxInFlight)
}
