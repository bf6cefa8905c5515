package database

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/pgtest"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// leaseLog is an in-memory LeaseRecorder; fail makes RecordLease fail.
type leaseLog struct {
	mu     sync.Mutex
	leases []Lease
	fail   error
}

func (l *leaseLog) RecordLease(_ context.Context, le Lease) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.leases = append(l.leases, le)
	return nil
}

func (l *leaseLog) find(id string) (Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, le := range l.leases {
		if le.ID == id {
			return le, true
		}
	}
	return Lease{}, false
}

func (l *leaseLog) get(t testing.TB, id string) Lease {
	t.Helper()
	le, ok := l.find(id)
	if !ok {
		t.Fatalf("lease %q was not recorded", id)
	}
	return le
}

var _ LeaseRecorder = (*leaseLog)(nil)

type harness struct {
	t        testing.TB
	db       *Backend
	leases   *leaseLog
	rootURL  string // superuser URL
	tmpl     string // connection_url template
	user, pw string
}

func newHarness(t testing.TB, rootURL string) *harness {
	t.Helper()
	tmpl, user, pw, err := pgtest.SplitURL(rootURL)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, leases: &leaseLog{}, rootURL: rootURL, tmpl: tmpl, user: user, pw: pw}
	h.db = New(storage.NewView(inmem.New(), "logical/db/"), Options{Leases: h.leases, ConnectTimeout: 3 * time.Second})
	t.Cleanup(h.db.Close)
	return h
}

func body(t testing.TB, s string) map[string]any {
	t.Helper()
	if s == "" {
		return nil
	}
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("bad test body %q: %v", s, err)
	}
	return m
}

func (h *harness) do(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return h.db.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, MountPoint: "database/", Data: data})
}

func (h *harness) must(op logical.Operation, path string, data map[string]any) *logical.Response {
	h.t.Helper()
	resp, err := h.do(op, path, data)
	if err != nil {
		h.t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// configure writes config "pg" with the superuser and role "app".
func (h *harness) configure(roleBody string) {
	h.t.Helper()
	h.must(logical.UpdateOperation, "config/pg", map[string]any{
		"plugin_name": PluginName, "connection_url": h.tmpl, "username": h.user, "password": h.pw,
		"allowed_roles": []any{"app", "short"},
	})
	h.must(logical.UpdateOperation, "roles/app", body(h.t, roleBody))
}

const appRole = `{"db_name":"pg","creation_statements":["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'","GRANT pg_read_all_data TO \"{{name}}\""],"default_ttl":"1h","max_ttl":"2h"}`

// creds issues credentials for role and returns them with the lease.
func (h *harness) creds(role string) (user, pw string, le Lease) {
	h.t.Helper()
	resp := h.must(logical.ReadOperation, "creds/"+role, nil)
	user, _ = resp.Data["username"].(string)
	pw, _ = resp.Data["password"].(string)
	if user == "" || pw == "" || resp.LeaseID == "" || !resp.Renewable || resp.LeaseDuration <= 0 {
		h.t.Fatalf("creds response incomplete: lease %q renewable %v duration %d", resp.LeaseID, resp.Renewable, resp.LeaseDuration)
	}
	return user, pw, h.leases.get(h.t, resp.LeaseID)
}

// login connects as user and runs a SELECT.
func (h *harness) login(user, pw string) error {
	u := strings.NewReplacer("{{username}}", user, "{{password}}", pw).Replace(h.tmpl)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var n int
	return c.QueryRow(ctx, "SELECT count(*) FROM pg_class").Scan(&n)
}

// super runs fn on a superuser connection.
func (h *harness) super(fn func(c *pgx.Conn) error) {
	h.t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, h.rootURL)
	if err != nil {
		h.t.Fatalf("superuser connect: %v", err)
	}
	defer c.Close(ctx)
	if err := fn(c); err != nil {
		h.t.Fatalf("superuser: %v", err)
	}
}

// roleExists reports whether a PostgreSQL role exists, and its VALID UNTIL.
func (h *harness) roleExists(name string) (bool, time.Time) {
	h.t.Helper()
	var exists bool
	var until *time.Time
	h.super(func(c *pgx.Conn) error {
		err := c.QueryRow(context.Background(), "SELECT rolvaliduntil FROM pg_roles WHERE rolname=$1", name).Scan(&until)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		exists = err == nil
		return err
	})
	if until == nil {
		return exists, time.Time{}
	}
	return exists, *until
}

// dynamicUsers counts the users of role "app" that exist now.
func (h *harness) dynamicUsers() int {
	h.t.Helper()
	var n int
	h.super(func(c *pgx.Conn) error {
		return c.QueryRow(context.Background(), "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-app-%'").Scan(&n)
	})
	return n
}
