// This module only builds the Vault server used by tests and `make dev`.
// It is kept apart from the plugin's go.mod so that Vault's large
// dependency graph never leaks into the plugin.
module github.com/vault-jwt/vault-plugin-secrets-jwt/tools/vault

go 1.25.3

require github.com/hashicorp/vault v1.21.1
