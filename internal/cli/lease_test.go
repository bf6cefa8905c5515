package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/edgevault/edgevault/internal/pgtest"
)

// TestLeaseDatabase drives "edgevault lease" over a renewable lease: a real
// PostgreSQL user from a dev server's database engine is renewed (within
// the role's max_ttl), looked up, and revoked, after which it can no longer
// log in. The testscript lease.txt covers certificate leases, which are not
// renewable.
func TestLeaseDatabase(t *testing.T) {
	pgURL := pgtest.Start(t)
	tmpl, user, pw, err := pgtest.SplitURL(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	info, stop, err := startDevServer("root")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	env := map[string]string{"EDGEVAULT_ADDR": info.addr, "EDGEVAULT_TOKEN": info.rootToken}
	run := func(wantCode int, args ...string) string {
		t.Helper()
		var out, errb strings.Builder
		code := Run(args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
		if code != wantCode {
			t.Fatalf("edgevault %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	field := func(out, key string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + key + ` +(\S+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s in\n%s", key, out)
		}
		return m[1]
	}

	run(0, "write", "sys/mounts/database", "type=database")
	run(0, "write", "database/config/pg", "plugin_name=postgresql-database-plugin", "connection_url="+tmpl,
		"username="+user, "password="+pw, "allowed_roles=ro")
	run(0, "write", "database/roles/ro", "db_name=pg", "default_ttl=10m", "max_ttl=1h",
		`creation_statements=CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`)
	var creds struct {
		LeaseID       string `json:"lease_id"`
		LeaseDuration int    `json:"lease_duration"`
		Data          struct {
			Username, Password string
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(run(0, "read", "-format=json", "database/creds/ro")), &creds); err != nil {
		t.Fatal(err)
	}
	id := creds.LeaseID
	if !strings.HasPrefix(id, "database/creds/ro/") || creds.LeaseDuration != 600 {
		t.Fatalf("creds: lease %q for %ds", id, creds.LeaseDuration)
	}

	out := run(0, "lease", "renew", "-increment=30m", id)
	// The server answers the increment it granted, as Vault does.
	if d := field(out, "lease_duration"); field(out, "lease_id") != id || d != "30m" ||
		field(out, "lease_renewable") != "true" {
		t.Fatalf("renew -increment=30m:\n%s", out)
	}
	// More than max_ttl allows is capped, not refused (Vault's behaviour);
	// the duration granted is at most the hour left.
	out = run(0, "lease", "renew", "-format=json", "-increment=5h", id)
	var renewed struct {
		LeaseID       string `json:"lease_id"`
		LeaseDuration int    `json:"lease_duration"`
	}
	if err := json.Unmarshal([]byte(out), &renewed); err != nil {
		t.Fatalf("renew -format=json: %v\n%s", err, out)
	}
	if renewed.LeaseID != id || renewed.LeaseDuration > 3600 || renewed.LeaseDuration < 3000 {
		t.Fatalf("renew -increment=5h granted %ds, want the ~1h left before max_ttl:\n%s", renewed.LeaseDuration, out)
	}
	out = run(0, "lease", "lookup", id)
	if field(out, "id") != id || field(out, "renewable") != "true" || field(out, "last_renewal") == "<nil>" {
		t.Fatalf("lookup after renew:\n%s", out)
	}

	login := func() error {
		cfg, err := pgx.ParseConfig(pgURL)
		if err != nil {
			t.Fatal(err)
		}
		cfg.User, cfg.Password = creds.Data.Username, creds.Data.Password
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err == nil {
			c.Close(context.Background())
		}
		return err
	}
	if err := login(); err != nil {
		t.Fatalf("the user cannot log in before revocation: %v", err)
	}
	if out := run(0, "lease", "revoke", id); !strings.Contains(out, "Success! Revoked lease: "+id) {
		t.Fatalf("revoke: %s", out)
	}
	if err := login(); err == nil {
		t.Fatal("the user still logs in after lease revoke")
	}
	if out := run(1, "lease", "renew", id); !strings.Contains(out, "renew lease "+id) {
		t.Fatalf("renew of a revoked lease: %s", out)
	}
}

// FuzzLeaseArg: an accepted lease ID (or prefix) is trimmed, free of control
// characters and never empty (a prefix never only slashes, which would name
// every lease); a refused one is a usage error that does not repeat it.
func FuzzLeaseArg(f *testing.F) {
	for _, s := range []string{"database/creds/ro/2f6a614c4aa6", "pki/issue/web", " / ", "", "a\nb", "/", "x\x7f"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, arg string, prefix bool) {
		id, err := leaseArg("ID", arg, prefix)
		if err != nil {
			if !isUsage(err) || (len(strings.TrimSpace(arg)) > 3 && strings.Contains(err.Error(), strings.TrimSpace(arg))) {
				t.Fatalf("leaseArg(%q, %v) = %v: want a usage error that does not repeat the argument", arg, prefix, err)
			}
			return
		}
		if id == "" || id != strings.TrimSpace(id) || (prefix && strings.Trim(id, "/") == "") {
			t.Fatalf("leaseArg(%q, %v) accepted %q", arg, prefix, id)
		}
		for _, r := range id {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("leaseArg(%q, %v) accepted a control character", arg, prefix)
			}
		}
	})
}
