package main

import (
	"strings"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         int64
		err          string
	}{
		{"typical", "Name:\tvault-plugin\nVmPeak:\t  900000 kB\nVmRSS:\t   33280 kB\nRssAnon:\t 20000 kB\n", 33280 << 10, ""},
		{"missing", "Name:\tkthreadd\nState:\tS (sleeping)\n", 0, "no VmRSS line"},
		{"bad unit", "VmRSS:\t 12 MB\n", 0, `want "<n> kB"`},
		{"bad number", "VmRSS:\t 1x2 kB\n", 0, "invalid syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVmRSS(tc.status)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseVmRSS: %d, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseVmRSS: %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestParseStartupFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-vault-pid", "12"}, ""},
		{[]string{}, "-vault-pid: required"},
		{[]string{"-vault-pid", "12", "-entries", "0"}, "-entries 0"},
		{[]string{"-vault-pid", "12", "-rounds", "21"}, "-rounds 21"},
		{[]string{"-vault-pid", "12", "-addr", "http://example.com:8200"}, "loopback"},
		{[]string{"-vault-pid", "12", "extra"}, "unexpected arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseStartupFlags(tc.args)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("parseStartupFlags(%q): %v; want an error with %q", tc.args, err, tc.err)
			}
		})
	}
}
