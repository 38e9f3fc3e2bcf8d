module github.com/vault-jwt/vault-plugin-secrets-jwt

go 1.26.4

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	golang.org/x/crypto v0.45.0
)

require github.com/c2sp/wycheproof v0.0.0-20260902155932-3fa63dd0344a
