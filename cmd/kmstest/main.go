// Command kmstest serves an AWS KMS endpoint for tests on a loopback
// address, with injectable faults; see package signer/awskms/kmstest.
//
//	kmstest -listen 127.0.0.1:0 -latency 20ms -throttle-rate 0.1
//
// Its first line of output is KMSTEST_URL=http://127.0.0.1:PORT; it serves
// until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := kmstest.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
