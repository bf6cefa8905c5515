package database

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// FuzzLeaseData: DecodeLeaseData never panics, and what it accepts
// round-trips.
func FuzzLeaseData(f *testing.F) {
	f.Add([]byte(`{"db_name":"pg","role":"app","username":"v-app-abc-1700000000"}`))
	f.Add([]byte(`{"db_name":"pg","role":"app","username":"u","revocation_statements":["DROP ROLE \"{{name}}\""],"renew_statements":["ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}'"]}`))
	f.Add([]byte(`{"db_name":"../x","username":"u"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ld, err := DecodeLeaseData(data)
		if err != nil {
			if !errors.Is(err, ErrBadLeaseData) {
				t.Fatalf("error %v does not match ErrBadLeaseData", err)
			}
			return
		}
		raw, err := json.Marshal(ld)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeLeaseData(raw)
		if err != nil || again.DBName != ld.DBName || again.Username != ld.Username || again.Role != ld.Role {
			t.Fatalf("round trip: %+v -> %+v, %v", ld, again, err)
		}
	})
}

// FuzzConfig: config parsing (connection_url and the other fields) never
// panics, refuses with ErrInvalidRequest, and never puts the root password
// into an error.
func FuzzConfig(f *testing.F) {
	const pw = "Zq9-root-Secret-Pw"
	f.Add("postgres://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable", "root", "app,other", "4", "30s")
	f.Add("host=127.0.0.1 port=5432 user={{username}} password={{password}} dbname=postgres", "root", "*", "1", "0")
	f.Add("postgresql://{{username}}@h/db?password={{password}}", "ro'ot", "", "1001", "x")
	f.Add("postgres://u:"+pw+"@[::1", "", "a", "-1", "-5s")
	f.Add("postgres://{{username}}:{{password}}@h/db?options={{password}}", "root", "a", "2", "1")
	f.Fuzz(func(t *testing.T, url, user, roles, maxOpen, lifetime string) {
		data := map[string]any{"plugin_name": PluginName, "connection_url": url, "username": user, "password": pw,
			"allowed_roles": roles, "max_open_connections": maxOpen, "max_connection_lifetime": lifetime}
		c := &dbConfig{VerifyConnection: true, MaxOpenConnections: 4}
		err := parseConfig(c, data)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatalf("error %v is not ErrInvalidRequest", err)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error holds the password: %v", err)
			}
			return
		}
		pc, err := c.poolConfig(time.Second)
		if err != nil {
			t.Fatalf("accepted config does not build: %v", err)
		}
		if strings.Contains(url, "{{password}}") && pc.ConnConfig.Password != pw {
			t.Fatal("password not applied")
		}
		if strings.Contains(redactedURL(c.ConnectionURL), pw) && !strings.Contains(url, "{{password}}") {
			// a literal password in the URL must be redacted on read
			if isURL(url) {
				t.Fatalf("read shows the password: %q", redactedURL(c.ConnectionURL))
			}
		}
	})
}

// FuzzRole: role parsing never panics and enforces its TTL rules.
func FuzzRole(f *testing.F) {
	f.Add("pg", `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`, "1h", "2h")
	f.Add("", "SELECT 1", "3h", "1h")
	f.Add("a b", `CREATE ROLE "{{username}}"`, "60", "1000h")
	f.Fuzz(func(t *testing.T, db, stmt, ttl, maxTTL string) {
		b := New(nil, Options{})
		r := &role{}
		err := b.parseRole(r, map[string]any{"db_name": db, "creation_statements": stmt, "default_ttl": ttl, "max_ttl": maxTTL})
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatalf("error %v is not ErrInvalidRequest", err)
			}
			return
		}
		gotTTL, gotMax := b.ttls(r)
		if gotTTL <= 0 || gotTTL > gotMax || gotMax > DefaultMaxTTL {
			t.Fatalf("ttls %v/%v out of bounds for %+v", gotTTL, gotMax, r)
		}
	})
}
