package bench

// Setup of the pki-issue and db-creds operations, and the one decode on a
// hot path: the lease_id of a database/creds response.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// The names the setup of pki-issue and db-creds writes.
const (
	benchRole   = "bench"      // pki role, database role and database config
	benchDomain = "bench.test" // allowed_domains of the pki role
)

// ErrNoLeaseID is returned when a database/creds response carries no
// lease_id, so the credentials cannot be revoked.
var ErrNoLeaseID = errors.New("no lease_id in the response")

// prepare readies the server for ops that need an engine: pki-issue and
// db-creds. It sends its requests one at a time from one worker.
func (t *target) prepare(ctx context.Context, cfg Config) error {
	if cfg.Op != OpPKIIssue && cfg.Op != OpDBCreds {
		return nil
	}
	w := t.newWorker(ctx, nil)
	defer w.close()
	if cfg.Op == OpPKIIssue {
		return w.preparePKI(cfg)
	}
	return w.prepareDatabase(cfg)
}

// call sends one setup request (path relative to /v1/, body JSON-encoded
// unless nil) and returns the response body of a 2xx answer.
func (w *worker) call(method, path string, body any) ([]byte, error) {
	w.raw = rawRequest{method: method, path: w.t.base + "/v1/" + path}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		w.raw.body = b
	}
	if err := w.do(kindRaw, 0, time.Now().Add(w.t.timeout)); err != nil {
		return nil, err
	}
	return w.body, nil
}

// status returns the HTTP status of a failed request, 0 if err is not one.
func status(err error) int {
	var re *requestError
	if errors.As(err, &re) {
		return re.status
	}
	return 0
}

// ensureMount mounts an engine of type typ at the target's mount unless one
// is there; a mount of another type is an error naming -mount.
func (w *worker) ensureMount(typ string) error {
	raw, err := w.call("GET", "sys/mounts", nil)
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	var env struct {
		Data map[string]struct {
			Type string `json:"type"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("list mounts: decode the response: %w", err)
	}
	if m, ok := env.Data[w.t.mount+"/"]; ok {
		if m.Type != typ {
			return fmt.Errorf("%w: -mount: %s/ is a %q mount, want %q (choose another -mount)", ErrInvalidConfig, w.t.mount, m.Type, typ)
		}
		return nil
	}
	if _, err := w.call("POST", "sys/mounts/"+w.t.mount, map[string]any{"type": typ}); err != nil {
		return fmt.Errorf("mount %s at %s/: %w", typ, w.t.mount, err)
	}
	return nil
}

// preparePKI mounts pki, makes sure the mount has an EC P-256 CA, and
// writes the role.
func (w *worker) preparePKI(cfg Config) error {
	if err := w.ensureMount("pki"); err != nil {
		return err
	}
	m := w.t.mount
	raw, err := w.call("GET", m+"/cert/ca", nil)
	haveCA := false
	switch {
	case err == nil:
		// Vault answers 200 with an empty certificate when there is no CA.
		if haveCA, err = checkBenchCA(raw); err != nil {
			return fmt.Errorf("%w: -mount: %s/ already has a CA: %v (choose another -mount)", ErrInvalidConfig, m, err)
		}
	case status(err) != 404 && status(err) != 400:
		return fmt.Errorf("read the CA: %w", err)
	}
	if !haveCA {
		if _, err := w.call("POST", m+"/root/generate/internal", map[string]any{
			"common_name": "edgevault bench root", "key_type": "ec", "key_bits": 256, "ttl": "87600h",
		}); err != nil {
			return fmt.Errorf("generate the root CA: %w", err)
		}
	}
	if _, err := w.call("POST", m+"/roles/"+benchRole, map[string]any{
		"allowed_domains": benchDomain, "allow_subdomains": true,
		"key_type": "ec", "key_bits": 256, "ttl": "5m", "max_ttl": "5m", "no_store": cfg.PKINoStore,
	}); err != nil {
		return fmt.Errorf("write the role: %w", err)
	}
	return nil
}

// checkBenchCA reports whether the cert/ca response body holds a
// certificate, and checks that it is EC P-256, the key the figure
// is about.
func checkBenchCA(raw []byte) (bool, error) {
	var env struct {
		Data struct {
			Certificate string `json:"certificate"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return false, fmt.Errorf("decode cert/ca: %w", err)
	}
	if strings.TrimSpace(env.Data.Certificate) == "" {
		return false, nil
	}
	block, _ := pem.Decode([]byte(env.Data.Certificate))
	if block == nil {
		return true, errors.New("cert/ca holds no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return true, fmt.Errorf("cert/ca: %w", err)
	}
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return true, fmt.Errorf("its key is %s, not EC P-256", cert.PublicKeyAlgorithm)
	}
	return true, nil
}

// prepareDatabase mounts database and writes the config and the role.
func (w *worker) prepareDatabase(cfg Config) error {
	pg, err := splitPGURL(cfg.PGURL)
	if err != nil {
		return fmt.Errorf("%w: -pg-url: %v", ErrInvalidConfig, err)
	}
	if err := w.ensureMount("database"); err != nil {
		return err
	}
	m := w.t.mount
	if _, err := w.call("POST", m+"/config/"+benchRole, map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": pg.template,
		"username":       pg.username,
		"password":       pg.password,
		"allowed_roles":  []string{benchRole},
	}); err != nil {
		return fmt.Errorf("write the database config (check -pg-url, as the server reaches it): %w", err)
	}
	if _, err := w.call("POST", m+"/roles/"+benchRole, map[string]any{
		"db_name": benchRole,
		"creation_statements": []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			`GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`,
		},
		"revocation_statements": []string{
			`REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM "{{name}}";`,
			`DROP ROLE IF EXISTS "{{name}}";`,
		},
		"default_ttl": "5m",
		"max_ttl":     "1h",
	}); err != nil {
		return fmt.Errorf("write the database role: %w", err)
	}
	return nil
}

// pgURL is a PostgreSQL URL split into a Vault connection_url template and
// its credentials.
type pgURL struct {
	template           string // postgres://{{username}}:{{password}}@host/db?...
	username, password string
}

// splitPGURL checks a PostgreSQL URL and splits it. Its errors never
// contain the URL, which holds a password.
func splitPGURL(s string) (pgURL, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return pgURL{}, errors.New("contains a control character")
	}
	u, err := url.Parse(s)
	if err != nil {
		return pgURL{}, errors.New("not a URL (want postgres://user:password@host:port/dbname)")
	}
	switch {
	case u.Scheme != "postgres" && u.Scheme != "postgresql":
		return pgURL{}, fmt.Errorf("scheme must be postgres or postgresql, got %q", u.Scheme)
	case u.Host == "":
		return pgURL{}, errors.New("no host (want postgres://user:password@host:port/dbname)")
	case u.User == nil || u.User.Username() == "":
		return pgURL{}, errors.New("no user name (want postgres://user:password@host:port/dbname)")
	case strings.Contains(s, "{{"):
		return pgURL{}, errors.New("give the real user and password, not {{username}}/{{password}} placeholders")
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return pgURL{}, errors.New("no password (want postgres://user:password@host:port/dbname)")
	}
	out := pgURL{username: u.User.Username(), password: pw}
	u.User = nil
	out.template = u.Scheme + "://{{username}}:{{password}}@" + strings.TrimPrefix(u.String(), u.Scheme+"://")
	return out, nil
}

// leaseIDOf decodes the lease_id of a Vault response envelope.
func leaseIDOf(body []byte) (string, error) {
	var env struct {
		LeaseID string `json:"lease_id"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return "", fmt.Errorf("decode the response: %w", err)
	}
	if env.LeaseID == "" {
		return "", ErrNoLeaseID
	}
	if !utf8.ValidString(env.LeaseID) || len(env.LeaseID) > maxLeaseID {
		return "", fmt.Errorf("%w: lease_id of %d bytes, not valid UTF-8 or too long", ErrNoLeaseID, len(env.LeaseID))
	}
	return env.LeaseID, nil
}

// maxLeaseID bounds the lease ids leaseIDOf accepts.
const maxLeaseID = 1024

// appendJSONString appends s, valid UTF-8, as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
