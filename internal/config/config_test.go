package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseHCLAndJSON(t *testing.T) {
	hclText := `
listener "tcp" {
  address       = "0.0.0.0:8200"
  tls_cert_file = "/etc/ev/cert.pem"
  tls_key_file  = "/etc/ev/key.pem"
}
storage "bolt" {
  path = "/var/lib/ev/ev.db"
}
log_level = "debug"
`
	jsonText := `{
  "listener": {"tcp": {"address": "0.0.0.0:8200", "tls_cert_file": "/etc/ev/cert.pem", "tls_key_file": "/etc/ev/key.pem"}},
  "storage": {"bolt": {"path": "/var/lib/ev/ev.db"}},
  "log_level": "debug"
}`
	for name, text := range map[string]string{"hcl": hclText, "json": jsonText} {
		cfg, err := Parse(text)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.Listener.Address != "0.0.0.0:8200" || cfg.Listener.TLSKeyFile != "/etc/ev/key.pem" ||
			cfg.Storage.Type != "bolt" || cfg.Storage.Path != "/var/lib/ev/ev.db" || cfg.LogLevel != "debug" ||
			cfg.Seal != "shamir" || cfg.MaxRequestSize != 32<<20 {
			t.Fatalf("%s: parsed %+v", name, cfg)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]struct{ text, want string }{
		"no storage":        {`listener "tcp" { tls_disable = true }`, "storage block is required"},
		"bolt without path": {`storage "bolt" {}` + "\n" + `listener "tcp" { tls_disable = true }`, "path is required"},
		"unknown storage":   {`storage "s3" {}`, `storage "s3": unknown type`},
		"unknown key":       {`storage "inmem" {}` + "\nfoo = 1", `unknown setting "foo"`},
		"unknown in block":  {"storage \"bolt\" {\n path = \"x\"\n paht = \"y\"\n}", `unknown setting "paht"`},
		"no tls":            {`storage "inmem" {}`, "tls_disable = true"},
		"half tls":          {`storage "inmem" {}` + "\n" + `listener "tcp" { tls_cert_file = "c" }`, "must be given together"},
		"bad address":       {`storage "inmem" {}` + "\n" + `listener "tcp" { address = "nope"` + "\n" + `tls_disable = true }`, `address "nope"`},
		"bad level":         {`storage "inmem" {}` + "\nlog_level = \"loud\"\n" + `listener "tcp" { tls_disable = true }`, "log_level"},
		"bad seal":          {`storage "inmem" {}` + "\n" + `seal "magic" {}`, `seal "magic"`},
		"dev seal no file":  {`storage "inmem" {}` + "\n" + `seal "dev" {}` + "\n" + `listener "tcp" { tls_disable = true }`, "key_file is required"},
		"two storages":      {`storage "inmem" {}` + "\n" + `storage "bolt" { path = "x" }`, "more than once"},
		"syntax":            {`storage "bolt" {`, "parse"},
		"wrong type":        {`storage "inmem" {}` + "\n" + `listener "tcp" { tls_disable = "maybe" }`, "tls_disable"},
		"no label":          {`storage { path = "x" }`, "type label"},
		"bool as 2":         {`storage "inmem" {}` + "\n" + `listener "tcp" { tls_disable = 2 }`, "expected true or false"},
		"list address":      {`storage "inmem" {}` + "\n" + `listener "tcp" {` + "\n" + `address = ["a"]` + "\n" + `tls_disable = true }`, "single value"},
	}
	for name, tc := range cases {
		_, err := Parse(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}
}

func TestBoolForms(t *testing.T) {
	for _, v := range []string{"true", "1", `"true"`, `"1"`} {
		cfg, err := Parse(`storage "inmem" {}` + "\n" + `listener "tcp" { tls_disable = ` + v + ` }`)
		if err != nil || !cfg.Listener.TLSDisable {
			t.Errorf("tls_disable = %s: %+v %v", v, cfg.Listener, err)
		}
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.hcl")
	if err := os.WriteFile(p, []byte("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p + ".missing"); err == nil {
		t.Fatal("missing file accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`storage "bolt" { path = "x" }` + "\n" + `listener "tcp" { tls_disable = true }`)
	f.Add(`{"storage":{"inmem":{}}}`)
	f.Add(`listener "tcp" "x" { }`)
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = Parse(text)
	})
}
