// Command vault-plugin-secrets-jwt is the JWT secrets engine plugin binary
// that Vault starts. All the work is in package plugin.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/plugin"
)

func main() {
	if err := plugin.Run(os.Args[1:], os.Stdout); err != nil {
		hclog.New(&hclog.LoggerOptions{Name: "vault-plugin-secrets-jwt"}).Error("plugin shutting down", "error", err)
		os.Exit(1)
	}
}
