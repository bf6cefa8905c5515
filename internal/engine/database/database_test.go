package database

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/pgtest"
)

func TestCredsIssueRenewRevoke(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	h.configure(appRole)
	user, pw, le := h.creds("app")
	if !strings.HasPrefix(le.ID, "database/creds/app/") || le.TTL != time.Hour || le.MaxTTL != 2*time.Hour || le.Path != "database/creds/app" {
		t.Fatalf("lease = %+v", le)
	}
	if err := h.login(user, pw); err != nil {
		t.Fatalf("login as the new user: %v", err)
	}
	exists, until := h.roleExists(user)
	if !exists || until.Sub(le.IssueTime.Add(le.TTL)).Abs() > 2*time.Second {
		t.Fatalf("role exists=%v valid until %v, want lease end %v", exists, until, le.IssueTime.Add(le.TTL))
	}
	// Renew moves VALID UNTIL.
	newEnd := time.Now().Add(90 * time.Minute).Truncate(time.Second)
	if err := h.db.Renew(context.Background(), le.Data, newEnd); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if _, until := h.roleExists(user); !until.Equal(newEnd) {
		t.Fatalf("after renew valid until %v, want %v", until, newEnd)
	}
	if err := h.db.Revoke(context.Background(), le.Data); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if exists, _ := h.roleExists(user); exists {
		t.Fatal("user still exists after revoke")
	}
	if err := h.login(user, pw); err == nil {
		t.Fatal("login still works after revoke")
	}
	// Idempotent: a retried revoke succeeds.
	if err := h.db.Revoke(context.Background(), le.Data); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if err := h.db.Renew(context.Background(), le.Data, newEnd); !errors.Is(err, ErrNoUser) {
		t.Fatalf("renew of a revoked user: %v, want ErrNoUser", err)
	}
}

func TestRevokeEndsSessionsAndDropsOwnedObjects(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	h.configure(`{"db_name":"pg","creation_statements":"CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT CREATE ON SCHEMA public TO \"{{name}}\";"}`)
	user, pw, le := h.creds("app")
	ctx := context.Background()
	c, err := pgx.Connect(ctx, strings.NewReplacer("{{username}}", user, "{{password}}", pw).Replace(h.tmpl))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	sfx, _ := randomString(8, lowerDigits)
	table := "owned_by_dynamic_" + sfx
	if _, err := c.Exec(ctx, "CREATE TABLE "+table+" (x int)"); err != nil {
		t.Fatal(err)
	}
	if err := h.db.Revoke(ctx, le.Data); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if exists, _ := h.roleExists(user); exists {
		t.Fatal("user still exists")
	}
	// The user's table was reassigned to the root user, not lost.
	h.super(func(su *pgx.Conn) error {
		var owner string
		if err := su.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = $1", table).Scan(&owner); err != nil {
			return err
		}
		if owner != h.user {
			t.Errorf("table owner after revoke = %q, want %q", owner, h.user)
		}
		return nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(ctx) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the revoked user's session is still alive")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCredsExpireByValidUntil(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	h.configure(appRole)
	h.must(logical.UpdateOperation, "roles/short", body(t,
		`{"db_name":"pg","creation_statements":["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'"],"default_ttl":2,"max_ttl":"10s"}`))
	user, pw, le := h.creds("short")
	if le.TTL != 2*time.Second {
		t.Fatalf("ttl %v", le.TTL)
	}
	if err := h.login(user, pw); err != nil {
		t.Fatalf("login before expiry: %v", err)
	}
	time.Sleep(time.Until(le.IssueTime.Add(le.TTL + 1500*time.Millisecond)))
	if err := h.login(user, pw); err == nil {
		t.Fatal("login works after VALID UNTIL passed")
	}
}

func TestRotateRoot(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	// A dedicated root role (unique, for a shared server), so the
	// superuser is never rotated.
	sfx, _ := randomString(8, lowerDigits)
	root, schema := "vault_root_"+sfx, "app_"+sfx
	h.super(func(c *pgx.Conn) error {
		_, err := c.Exec(context.Background(), strings.NewReplacer("vault_root", root, "app", schema).Replace(
			`CREATE ROLE vault_root LOGIN CREATEROLE PASSWORD 'initial-Pw-1';
			CREATE SCHEMA app AUTHORIZATION vault_root; CREATE TABLE app.t (x int); ALTER TABLE app.t OWNER TO vault_root`))
		return err
	})
	h.must(logical.UpdateOperation, "config/rot", map[string]any{
		"plugin_name": PluginName, "connection_url": h.tmpl, "username": root, "password": "initial-Pw-1",
		"allowed_roles": "app",
	})
	h.must(logical.UpdateOperation, "roles/app", body(t, `{"db_name":"rot","creation_statements":["CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'","GRANT USAGE ON SCHEMA `+schema+` TO \"{{name}}\"; GRANT SELECT ON `+schema+`.t TO \"{{name}}\""]}`))
	if err := h.login(root, "initial-Pw-1"); err != nil {
		t.Fatal(err)
	}
	h.creds("app") // opens the pool with the old password
	h.must(logical.UpdateOperation, "rotate-root/rot", nil)
	if err := h.login(root, "initial-Pw-1"); err == nil {
		t.Fatal("the old root password still works after rotate-root")
	}
	user, pw, _ := h.creds("app") // the engine uses the new password
	if err := h.login(user, pw); err != nil {
		t.Fatal(err)
	}
	resp := h.must(logical.ReadOperation, "config/rot", nil)
	details := resp.Data["connection_details"].(map[string]any)
	if details["username"] != root || details["connection_url"] != h.tmpl {
		t.Fatalf("config read: %v", resp.Data)
	}
	if _, ok := details["password"]; ok {
		t.Fatal("config read returns the password")
	}
	// A second rotation works too (the stored password is the new one).
	h.must(logical.UpdateOperation, "rotate-root/rot", nil)
	user, _, le := h.creds("app")
	// The default revocation works for a non-superuser root (CREATEROLE).
	if err := h.db.Revoke(context.Background(), le.Data); err != nil {
		t.Fatalf("revoke through a CREATEROLE root: %v", err)
	}
	if exists, _ := h.roleExists(user); exists {
		t.Fatal("user still exists")
	}
}

func TestBadInputs(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	h.configure(appRole)
	cfg := func(extra string) map[string]any {
		return body(t, `{"plugin_name":"postgresql-database-plugin","connection_url":"`+h.tmpl+`","username":"`+h.user+`","password":"`+h.pw+`"`+extra+`}`)
	}
	cases := []struct {
		name, path string
		data       map[string]any
		op         logical.Operation
		field      string
	}{
		{"unknown plugin", "config/x", body(t, `{"plugin_name":"mysql-database-plugin","connection_url":"postgres://a"}`), logical.UpdateOperation, "plugin_name"},
		{"missing url", "config/x", body(t, `{"plugin_name":"postgresql-database-plugin"}`), logical.UpdateOperation, "connection_url"},
		{"bad url", "config/x", cfg(`,"connection_url":"postgres://{{username}}:{{password}}@[::1"`), logical.UpdateOperation, "connection_url"},
		{"missing password", "config/x", body(t, `{"plugin_name":"postgresql-database-plugin","connection_url":"postgres://{{username}}:{{password}}@h/db","username":"u"}`), logical.UpdateOperation, "password"},
		{"unknown field", "config/x", cfg(`,"bogus":1`), logical.UpdateOperation, "bogus"},
		{"bad name", "config/a%20b", cfg(``), logical.UpdateOperation, "name"},
		{"role without db", "roles/r", body(t, `{"creation_statements":"CREATE ROLE \"{{name}}\""}`), logical.UpdateOperation, "db_name"},
		{"role without statements", "roles/r", body(t, `{"db_name":"pg"}`), logical.UpdateOperation, "creation_statements"},
		{"statements without name", "roles/r", body(t, `{"db_name":"pg","creation_statements":"SELECT 1"}`), logical.UpdateOperation, "creation_statements"},
		{"ttl above max_ttl", "roles/r", body(t, `{"db_name":"pg","creation_statements":"CREATE ROLE \"{{name}}\"","default_ttl":"3h","max_ttl":"1h"}`), logical.UpdateOperation, "default_ttl"},
		{"max_ttl above mount", "roles/r", body(t, `{"db_name":"pg","creation_statements":"CREATE ROLE \"{{name}}\"","max_ttl":"1000h"}`), logical.UpdateOperation, "max_ttl"},
		{"bad ttl", "roles/r", body(t, `{"db_name":"pg","creation_statements":"CREATE ROLE \"{{name}}\"","default_ttl":"soon"}`), logical.UpdateOperation, "default_ttl"},
		{"unknown role", "creds/nope", nil, logical.ReadOperation, "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.do(tc.op, tc.path, tc.data)
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %q", err, tc.field)
			}
			if strings.Contains(err.Error(), h.pw) {
				t.Fatal("error contains the root password")
			}
		})
	}
	// A role not in allowed_roles.
	h.must(logical.UpdateOperation, "roles/other", body(t, appRole))
	_, err := h.do(logical.ReadOperation, "creds/other", nil)
	if !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), "allowed_roles") {
		t.Fatalf("creds for a role outside allowed_roles: %v", err)
	}
	// A wrong root password with verify_connection: 400 + ErrConnect, names the config, no password.
	_, err = h.do(logical.UpdateOperation, "config/wrong", cfg(`,"password":"not-The-Password-9"`))
	if !errors.Is(err, logical.ErrInvalidRequest) || !errors.Is(err, ErrConnect) || !strings.Contains(err.Error(), `"wrong"`) ||
		strings.Contains(err.Error(), "not-The-Password-9") {
		t.Fatalf("wrong root password: %v", err)
	}
	// rotate-root needs a templated connection_url; a literal password is redacted on read.
	h.must(logical.UpdateOperation, "config/lit", body(t, `{"plugin_name":"postgresql-database-plugin","connection_url":"postgres://u:Literal-Pw-7@127.0.0.1:1/db","verify_connection":false}`))
	if _, err := h.do(logical.UpdateOperation, "rotate-root/lit", nil); !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), "connection_url") {
		t.Fatalf("rotate-root without {{password}}: %v", err)
	}
	if d := h.must(logical.ReadOperation, "config/lit", nil).Data["connection_details"].(map[string]any); strings.Contains(d["connection_url"].(string), "Literal-Pw-7") {
		t.Fatalf("config read shows a literal password: %v", d["connection_url"])
	}
	// Nothing was stored by failed writes.
	if _, err := h.do(logical.ReadOperation, "config/x", nil); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("failed config write left a record: %v", err)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	// The password is placed where it causes a syntax error: the server's
	// message quotes the token near the error.
	h.configure(`{"db_name":"pg","creation_statements":"CREATE ROLE \"{{name}}\" LOGIN PASSWORD {{password}} garbage"}`)
	before := h.dynamicUsers()
	_, err := h.do(logical.ReadOperation, "creds/app", nil)
	if !errors.Is(err, ErrStatement) {
		t.Fatalf("err = %v, want ErrStatement", err)
	}
	if !strings.Contains(err.Error(), "[redacted]") && !strings.Contains(err.Error(), "garbage") {
		t.Fatalf("unexpected error %q", err)
	}
	if strings.Contains(err.Error(), h.pw) {
		t.Fatal("error contains the root password")
	}
	// Nothing was created: the creation transaction rolled back.
	if n := h.dynamicUsers() - before; n != 0 {
		t.Errorf("%d dynamic users left after a failed creation", n)
	}
}

func TestLeaseRecordFailureDropsUser(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	h.configure(appRole)
	before := h.dynamicUsers()
	h.leases.fail = errors.New("lease store down")
	_, err := h.do(logical.ReadOperation, "creds/app", nil)
	if err == nil || !strings.Contains(err.Error(), "record lease") {
		t.Fatalf("err = %v", err)
	}
	if n := h.dynamicUsers() - before; n != 0 {
		t.Errorf("%d users left without a lease", n)
	}
}

func TestPostgresDownDuringRevoke(t *testing.T) {
	srv := pgtest.New(t)
	h := newHarness(t, srv.URL)
	h.configure(appRole)
	user, _, le := h.creds("app")
	saved := append([]byte(nil), le.Data...)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := h.db.Revoke(ctx, le.Data)
	if !errors.Is(err, ErrConnect) {
		t.Fatalf("revoke with PostgreSQL down: %v, want ErrConnect", err)
	}
	if !strings.Contains(err.Error(), `config "pg"`) || strings.Contains(err.Error(), h.pw) {
		t.Fatalf("error %q must name the config and not hold the password", err)
	}
	_, err = h.do(logical.ReadOperation, "creds/app", nil)
	if !errors.Is(err, ErrConnect) || strings.Contains(err.Error(), h.pw) {
		t.Fatalf("creds with PostgreSQL down: %v", err)
	}
	if string(le.Data) != string(saved) {
		t.Fatal("lease data changed by a failed revoke")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if exists, _ := h.roleExists(user); !exists {
		t.Fatal("user vanished while PostgreSQL was down")
	}
	if err := h.db.Revoke(context.Background(), le.Data); err != nil {
		t.Fatalf("retried revoke: %v", err)
	}
	if exists, _ := h.roleExists(user); exists {
		t.Fatal("user exists after the retried revoke")
	}
}

func TestConfigReadListDelete(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	h.configure(appRole)
	resp := h.must(logical.ReadOperation, "config/pg", nil)
	if resp.Data["plugin_name"] != PluginName || resp.Data["verify_connection"] != true {
		t.Fatalf("config read: %v", resp.Data)
	}
	for k, v := range resp.Data {
		if strings.Contains(strings.ToLower(k), "password") && k != "password_policy" {
			t.Fatalf("config read has %q", k)
		}
		_ = v
	}
	keys := h.must(logical.ListOperation, "config/", nil).Data["keys"].([]string)
	if len(keys) != 1 || keys[0] != "pg" {
		t.Fatalf("list config: %v", keys)
	}
	r := h.must(logical.ReadOperation, "roles/app", nil).Data
	if r["db_name"] != "pg" || r["default_ttl"] != int64(3600) || r["max_ttl"] != int64(7200) {
		t.Fatalf("role read: %v", r)
	}
	// Update keeps unspecified fields (password too).
	h.must(logical.UpdateOperation, "config/pg", map[string]any{"allowed_roles": "app"})
	h.creds("app")
	h.must(logical.DeleteOperation, "config/pg", nil)
	if _, err := h.do(logical.ReadOperation, "creds/app", nil); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("creds after config delete: %v", err)
	}
	ld := []byte(`{"db_name":"pg","role":"app","username":"v-app-x"}`)
	if err := h.db.Revoke(context.Background(), ld); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("revoke with the config gone: %v", err)
	}
}

func TestRedactedURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://{{username}}:{{password}}@h/db": "postgres://{{username}}:{{password}}@h/db",
		"postgres://u:s3cret@h/db":                  "postgres://u:%2A%2A%2A%2A%2A@h/db",
		"host=h user=u password=s3cret dbname=d":    "host=h user=u password=***** dbname=d",
	} {
		if got := redactedURL(in); got != want {
			t.Errorf("redactedURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConcurrentCredsWhileConfigChanges issues and revokes credentials from
// several goroutines while the config is rewritten and reset (pools closed
// under load); every issued user must work and be gone after revoke.
func TestConcurrentCredsWhileConfigChanges(t *testing.T) {
	h := newHarness(t, pgtest.Start(t))
	h.configure(appRole)
	before := h.dynamicUsers()
	ctx := context.Background()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.do(logical.UpdateOperation, "config/pg", map[string]any{"max_open_connections": 3}); err != nil {
				t.Errorf("config update: %v", err)
				return
			}
			if _, err := h.do(logical.UpdateOperation, "reset/pg", nil); err != nil {
				t.Errorf("reset: %v", err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 5; i++ {
				resp, err := h.do(logical.ReadOperation, "creds/app", nil)
				if err != nil {
					errs <- err
					return
				}
				le, ok := h.leases.find(resp.LeaseID)
				if !ok {
					errs <- errors.New("lease not recorded")
					return
				}
				if err := h.login(resp.Data["username"].(string), resp.Data["password"].(string)); err != nil {
					errs <- err
					return
				}
				if err := h.db.Revoke(ctx, le.Data); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	<-done
	if n := h.dynamicUsers() - before; n != 0 {
		t.Errorf("%d dynamic users left after revoking all", n)
	}
}
