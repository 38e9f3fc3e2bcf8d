// Package plugin is the process boundary: it parses the flags Vault passes
// to a plugin, sets up mutual TLS with Vault, and serves the backend through
// ServeMultiplex so one process serves every mount of this plugin.
package plugin

import (
	"fmt"
	"io"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/logical"
	sdkplugin "github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/backend"
)

// Version is the plugin's semantic version, reported to Vault as its running
// version. Release builds set it with
// -ldflags "-X github.com/vault-jwt/vault-plugin-secrets-jwt/plugin.Version=vX.Y.Z";
// register the plugin with the same -version.
var Version = "v0.1.0-dev"

// Run serves the plugin with the command-line arguments Vault passed (without
// the program name). It returns when Vault stops the plugin.
func Run(args []string, stdout io.Writer) error {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	printVersion := flags.Bool("version", false, "print the plugin version and exit")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *printVersion {
		_, err := fmt.Fprintln(stdout, Version)
		return err
	}
	return sdkplugin.ServeMultiplex(&sdkplugin.ServeOpts{
		BackendFactoryFunc: factory(),
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
}

// factory is the backend Run serves: it reports Version to Vault as its
// running version.
func factory() logical.Factory {
	return backend.NewFactory(backend.WithRunningVersion(Version))
}
