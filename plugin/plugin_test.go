package plugin

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

func TestRunVersion(t *testing.T) {
	var out bytes.Buffer
	if err := Run([]string{"-version"}, &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != Version {
		t.Fatalf("-version printed %q, want %q", got, Version)
	}
}

func TestRunRejectsUnknownFlags(t *testing.T) {
	if err := Run([]string{"-no-such-flag"}, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

// TestFactoryReportsVersion: the backend Run serves reports Version as its
// running version, which Vault shows as running_plugin_version and checks
// against the version the plugin was registered with.
func TestFactoryReportsVersion(t *testing.T) {
	ctx := context.Background()
	b, err := factory()(ctx, &logical.BackendConfig{
		Logger:      hclog.NewNullLogger(),
		System:      &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour},
		StorageView: &logical.InmemStorage{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Cleanup(ctx)
	v, ok := b.(logical.PluginVersioner)
	if !ok {
		t.Fatalf("%T reports no version", b)
	}
	if got := v.PluginVersion().Version; got != Version {
		t.Fatalf("running version %q, want %q", got, Version)
	}
}
