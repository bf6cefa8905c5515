package pgtest

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestServerStopRestart(t *testing.T) {
	s := New(t)
	ctx := context.Background()
	ping := func() error {
		c, err := pgx.Connect(ctx, s.URL)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		var n int
		return c.QueryRow(ctx, "SELECT 1").Scan(&n)
	}
	if err := ping(); err != nil {
		t.Fatalf("fresh server: %v", err)
	}
	// Password authentication is enforced (not trust).
	tmpl, user, _, err := SplitURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.NewReplacer("{{username}}", user, "{{password}}", "wrong").Replace(tmpl)
	if c, err := pgx.Connect(ctx, bad); err == nil {
		c.Close(ctx)
		t.Fatal("connected with a wrong password: authentication is not enforced")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestSplitURL(t *testing.T) {
	tmpl, u, p, err := SplitURL("postgres://bob:s3cr%40t@127.0.0.1:5/db?sslmode=disable")
	if err != nil || u != "bob" || p != "s3cr@t" || tmpl != "postgres://{{username}}:{{password}}@127.0.0.1:5/db?sslmode=disable" {
		t.Fatalf("got %q %q %q %v", tmpl, u, p, err)
	}
}
