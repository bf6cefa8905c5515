package httpapi_test

import (
	"context"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/edgevault/edgevault/internal/pgtest"
)

// Dynamic PostgreSQL users through the real Vault client, with their
// leases: issued, looked up, renewed, revoked (the user is dropped), and
// gone from sys/leases afterwards.
func TestDatabaseLeases(t *testing.T) {
	pgURL := pgtest.Start(t)
	ts := startServer(t, true)
	c := ts.client
	setupDatabase(t, c, pgURL)
	creds, err := c.Logical().Read("database/creds/ro")
	if err != nil {
		t.Fatal(err)
	}
	if creds.LeaseID == "" || !strings.HasPrefix(creds.LeaseID, "database/creds/ro/") || creds.LeaseDuration != 3600 {
		t.Fatalf("creds lease: %q %d", creds.LeaseID, creds.LeaseDuration)
	}
	login := func() error {
		cfg, err := pgx.ParseConfig(pgURL)
		if err != nil {
			t.Fatal(err)
		}
		cfg.User, cfg.Password = creds.Data["username"].(string), creds.Data["password"].(string)
		conn, err := pgx.ConnectConfig(context.Background(), cfg)
		if err == nil {
			conn.Close(context.Background())
		}
		return err
	}
	if err := login(); err != nil {
		t.Fatalf("the issued user cannot log in: %v", err)
	}
	look, err := c.Sys().Lookup(creds.LeaseID)
	if err != nil || look.Data["id"] != creds.LeaseID || look.Data["renewable"] != true {
		t.Fatalf("lookup: %v %v", look, err)
	}
	list, err := c.Logical().List("sys/leases/lookup/database/creds/ro/")
	if err != nil || list == nil {
		t.Fatalf("list: %v %v", list, err)
	}
	if keys := toStrings(list.Data["keys"]); len(keys) != 1 {
		t.Fatalf("list: %v", list.Data)
	}
	if r, err := c.Sys().Renew(creds.LeaseID, 1800); err != nil || r.LeaseID != creds.LeaseID || r.LeaseDuration != 1800 {
		t.Fatalf("renew: %v %v", r, err)
	}
	if err := c.Sys().Revoke(creds.LeaseID); err != nil {
		t.Fatal(err)
	}
	if err := login(); err == nil {
		t.Fatal("the user still logs in after its lease was revoked")
	}
	if _, err := c.Sys().Lookup(creds.LeaseID); statusOf(err) != 404 && statusOf(err) != 400 {
		t.Fatalf("lookup of a revoked lease: %v", err)
	}
	if _, err := c.Logical().Write("sys/leases/lookup", map[string]any{}); statusOf(err) != 400 || !strings.Contains(err.Error(), "lease_id") {
		t.Fatalf("lookup without lease_id: %v", err)
	}
}

// setupDatabase mounts database with a config "pg" for the PostgreSQL at
// pgURL and a role "ro" (1h, max 2h) whose users carry VALID UNTIL.
func setupDatabase(t *testing.T, c *vault.Client, pgURL string) {
	t.Helper()
	tmpl, user, pw, err := pgtest.SplitURL(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Sys().Mount("database", &vault.MountInput{Type: "database"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write("database/config/pg", map[string]any{"plugin_name": "postgresql-database-plugin",
		"connection_url": tmpl, "username": user, "password": pw, "allowed_roles": "ro"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write("database/roles/ro", map[string]any{"db_name": "pg", "default_ttl": "1h", "max_ttl": "2h",
		"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`}); err != nil {
		t.Fatal(err)
	}
}

func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
