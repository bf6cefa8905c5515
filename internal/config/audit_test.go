package config

import (
	"strings"
	"testing"
	"time"
)

const plain = `listener "tcp" { tls_disable = true }` + "\n"

func TestAuditDefaultsBesideTheDatabase(t *testing.T) {
	cfg, err := Parse(plain + `storage "bolt" { path = "/var/lib/ev/ev.db" }`)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Audit
	if a.Require != "all" || len(a.Devices) != 2 ||
		a.Devices[0].Options["file_path"] != "/var/lib/ev/audit.log" || a.Devices[1].Options["path"] != "/var/lib/ev/audit-log" {
		t.Fatalf("audit = %+v", a)
	}
	cfg, err = Parse(plain + `storage "inmem" {}`)
	if err != nil || len(cfg.Audit.Devices) != 0 {
		t.Fatalf("inmem: %+v %v", cfg.Audit, err)
	}
	cfg, err = Parse(plain + `storage "bolt" { path = "/x/ev.db" }` + "\naudit_disable = true")
	if err != nil || len(cfg.Audit.Devices) != 0 {
		t.Fatalf("disabled: %+v %v", cfg.Audit, err)
	}
}

func TestAuditBlocks(t *testing.T) {
	cfg, err := Parse(plain + `storage "inmem" {}
audit "f" {
  type = "file"
  file_path = "/var/log/ev.log"
}
audit "t" {
  type = "tlog"
  path = "/var/lib/ev/log"
  origin = "ev.example/audit"
}
audit_require = "any"
audit_checkpoint_interval = "250ms"
`)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Audit
	if a.Require != "any" || a.CheckpointInterval != 250*time.Millisecond || len(a.Devices) != 2 ||
		a.Devices[1].Options["origin"] != "ev.example/audit" || a.Devices[0].Type != "file" {
		t.Fatalf("audit = %+v", a)
	}
}

func TestAuditErrors(t *testing.T) {
	for name, tc := range map[string]struct{ conf, want string }{
		"bad require":    {`audit_require = "most"`, `audit_require "most"`},
		"no type":        {`audit "f" { file_path = "/a" }`, `audit "f": type is required`},
		"bad type":       {`audit "f" { type = "syslog" }`, `type "syslog"`},
		"file no path":   {`audit "f" { type = "file" }`, "file_path is required"},
		"tlog no path":   {`audit "t" { type = "tlog" }`, "path (a directory) is required"},
		"mixed options":  {`audit "f" { type = "file" file_path = "/a" origin = "x" }`, "belong to tlog devices"},
		"two logs":       {`audit "a" { type = "tlog" path = "/a" }` + "\n" + `audit "b" { type = "tlog" path = "/b" }`, "only one tlog device"},
		"duplicate path": {`audit "a" { type = "file" file_path = "/a" }` + "\n" + `audit "a" { type = "file" file_path = "/b" }`, "unique device path"},
		"unknown key":    {`audit "a" { type = "file" file_path = "/a" mode = "0600" }`, `unknown setting "mode"`},
		"no label":       {`audit { type = "file" }`, "expected a device path label"},
		"disable+blocks": {`audit_disable = true` + "\n" + `audit "a" { type = "file" file_path = "/a" }`, "contradicts"},
		"bad interval":   {`audit_checkpoint_interval = "soon"`, "audit_checkpoint_interval"},
	} {
		_, err := Parse(plain + `storage "inmem" {}` + "\n" + tc.conf)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}
}
