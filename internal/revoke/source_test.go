package revoke

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func bearerSource() Source {
	return Source{Name: "am", Kinds: []Kind{KindAlertmanager}, Auth: Auth{Method: AuthBearer}}.WithSecret(testSecret)
}

func hmacSource(tsHeader string) Source {
	return Source{Name: "edr", Kinds: []Kind{KindCloudEvents, KindGeneric},
		Auth: Auth{Method: AuthHMACSHA256, TimestampHeader: tsHeader}}.WithSecret(testSecret)
}

func TestAuthenticateBearer(t *testing.T) {
	src := bearerSource()
	body := []byte(`{}`)
	now := time.Now()
	h := http.Header{}
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("missing header: %v", err)
	}
	h.Set("Authorization", "Basic "+string(testSecret))
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong scheme: %v", err)
	}
	h.Set("Authorization", "Bearer "+string(testSecret[:len(testSecret)-1])+"X")
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong token: %v", err)
	}
	h.Set("Authorization", "Bearer "+string(testSecret[:20]))
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("token prefix: %v", err)
	}
	h.Set("Authorization", "Bearer "+string(testSecret))
	if err := Authenticate(src, h, body, now); err != nil {
		t.Errorf("good token: %v", err)
	}
	h.Set("Authorization", "bearer "+string(testSecret))
	if err := Authenticate(src, h, body, now); err != nil {
		t.Errorf("scheme is case-insensitive: %v", err)
	}
	noSecret := Source{Name: "x", Auth: Auth{Method: AuthBearer}}
	h.Set("Authorization", "Bearer ")
	if err := Authenticate(noSecret, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("source without secret accepted an empty token: %v", err)
	}
}

func TestAuthenticateHMAC(t *testing.T) {
	src := hmacSource("")
	body := readFile(t, "cloudevent.json")
	now := time.Now()
	h := http.Header{}
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing signature: %v", err)
	}
	h.Set(DefaultSignatureHeader, Sign(testSecret, "", body))
	if err := Authenticate(src, h, body, now); err != nil {
		t.Errorf("good signature: %v", err)
	}
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-3] ^= 1
	if err := Authenticate(src, h, tampered, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("tampered body: %v", err)
	}
	h.Set(DefaultSignatureHeader, Sign([]byte("another-secret-of-32-bytes......"), "", body))
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong key: %v", err)
	}
	for _, v := range []string{"deadbeef", "sha1=" + strings.Repeat("00", 32), "sha256=zz", "sha256=" + strings.Repeat("00", 31)} {
		h.Set(DefaultSignatureHeader, v)
		if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("signature %q: %v", v, err)
		}
	}
	// Custom header name.
	src.Auth.Header = "X-Hub-Signature-256"
	h = http.Header{}
	h.Set(DefaultSignatureHeader, Sign(testSecret, "", body))
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("signature in the wrong header: %v", err)
	}
	h.Set("X-Hub-Signature-256", Sign(testSecret, "", body))
	if err := Authenticate(src, h, body, now); err != nil {
		t.Errorf("custom header: %v", err)
	}
}

func TestAuthenticateHMACTimestamp(t *testing.T) {
	src := hmacSource("X-Edgevault-Timestamp")
	body := []byte(`{"id":"x"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	h := http.Header{}
	h.Set(DefaultSignatureHeader, Sign(testSecret, ts, body))
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("missing timestamp: %v", err)
	}
	h.Set("X-Edgevault-Timestamp", ts)
	if err := Authenticate(src, h, body, now); err != nil {
		t.Errorf("good: %v", err)
	}
	if err := Authenticate(src, h, body, now.Add(4*time.Minute)); err != nil {
		t.Errorf("within skew: %v", err)
	}
	if err := Authenticate(src, h, body, now.Add(6*time.Minute)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("replayed after the skew: %v", err)
	}
	// The timestamp is covered by the signature.
	h.Set("X-Edgevault-Timestamp", strconv.FormatInt(now.Unix()+1, 10))
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("changed timestamp: %v", err)
	}
	// A signature over the body alone is not enough.
	h.Set("X-Edgevault-Timestamp", ts)
	h.Set(DefaultSignatureHeader, Sign(testSecret, "", body))
	if err := Authenticate(src, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("signature without timestamp: %v", err)
	}
}

func TestSourceValidate(t *testing.T) {
	if err := bearerSource().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := hmacSource("X-Ts").Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		f     func(s *Source)
		field string
	}{
		{"name", func(s *Source) { s.Name = "../x" }, "name"},
		{"no kinds", func(s *Source) { s.Kinds = nil }, "kinds"},
		{"bad kind", func(s *Source) { s.Kinds = []Kind{"smtp"} }, "kinds[0]"},
		{"method", func(s *Source) { s.Auth.Method = "basic" }, "auth.method"},
		{"bearer header", func(s *Source) { s.Auth.Header = "X-Sig" }, "auth"},
		{"short secret", func(s *Source) { *s = s.WithSecret([]byte("short")) }, "secret"},
		{"token with space", func(s *Source) { *s = s.WithSecret([]byte("0123456789 abcdef0123")) }, "secret"},
		{"rate", func(s *Source) { s.RateLimit.PerSecond = -1 }, "rate_limit.per_second"},
		{"burst", func(s *Source) { s.RateLimit.Burst = MaxBurst + 1 }, "rate_limit.burst"},
	}
	for _, tt := range tests {
		s := bearerSource()
		tt.f(&s)
		if err := s.Validate(); !errors.Is(err, ErrInvalidSource) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: err = %v, want ErrInvalidSource naming %q", tt.name, err, tt.field)
		}
	}
	h := hmacSource("")
	h.Auth.Header = "X Sig"
	if err := h.Validate(); !errors.Is(err, ErrInvalidSource) {
		t.Errorf("bad header name: %v", err)
	}
	h = hmacSource("")
	h.Auth.MaxSkewSeconds = 60
	if err := h.Validate(); !errors.Is(err, ErrInvalidSource) {
		t.Errorf("max_skew without timestamp header: %v", err)
	}
}

func TestStoreSourcesHideSecret(t *testing.T) {
	b, _ := openBolt(t)
	s := newTestStore(t, b)
	ctx := t.Context()
	if err := s.PutSource(ctx, Source{Name: "nosecret", Kinds: []Kind{KindGeneric}, Auth: Auth{Method: AuthBearer}}); !errors.Is(err, ErrInvalidSource) {
		t.Fatalf("source without secret: %v", err)
	}
	src := hmacSource("X-Ts")
	if err := s.PutSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	got, err := s.Source(ctx, "edr")
	if err != nil {
		t.Fatal(err)
	}
	if !got.HasSecret || got.SecretID != secretID(testSecret) || len(got.SecretID) != 16 {
		t.Fatalf("read back: %+v", got)
	}
	out, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), string(testSecret)) || strings.Contains(string(out), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY") {
		t.Fatalf("secret in the JSON form: %s", out)
	}
	if !strings.Contains(string(out), `"has_secret":true`) {
		t.Fatalf("no has_secret: %s", out)
	}
	// The secret read back still authenticates.
	body := []byte(`{"id":"1"}`)
	h := http.Header{}
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	h.Set("X-Ts", ts)
	h.Set(DefaultSignatureHeader, Sign(testSecret, ts, body))
	if err := Authenticate(got, h, body, now); err != nil {
		t.Fatalf("stored secret does not authenticate: %v", err)
	}
	// A Source decoded from a client's JSON carries no secret, whatever it claims.
	var forged Source
	if err := json.Unmarshal([]byte(`{"name":"edr","has_secret":true,"secret":"x"}`), &forged); err != nil {
		t.Fatal(err)
	}
	if err := Authenticate(forged, h, body, now); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("forged source: %v", err)
	}
	names, err := s.ListSources(ctx)
	if err != nil || len(names) != 1 || names[0] != "edr" {
		t.Fatalf("list: %v %v", names, err)
	}
	if err := s.DeleteSource(ctx, "edr"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Source(ctx, "edr"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted source: %v", err)
	}
}
