package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Token = "t"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig with a token: %v", err)
	}
	cfg.Token = ""
	cfg.Op = OpBaseline
	if err := cfg.Validate(); err != nil {
		t.Fatalf("baseline needs no token: %v", err)
	}
}

func TestDefaultMount(t *testing.T) {
	for op, want := range map[Op]string{OpKVRead: "secret", OpFill: "secret", OpPKIIssue: "pki", OpDBCreds: "database"} {
		cfg := DefaultConfig()
		cfg.Op = op
		if got := cfg.mount(); got != want || op.DefaultMount() != want {
			t.Errorf("%s: mount %q, DefaultMount %q, want %q", op, got, op.DefaultMount(), want)
		}
		cfg.Mount = "/team/x/"
		if got := cfg.mount(); got != "team/x" {
			t.Errorf("%s with -mount /team/x/: %q", op, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		flag   string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"every op", func(c *Config) { c.Op = OpMixed }, ""},
		{"unknown op", func(c *Config) { c.Op = "kv-delete" }, "-op"},
		{"empty op", func(c *Config) { c.Op = "" }, "-op"},
		{"https address", func(c *Config) { c.Address = "https://vault.example:8200/" }, ""},
		{"address with base path", func(c *Config) { c.Address = "http://127.0.0.1:8200/prefix" }, ""},
		{"empty address", func(c *Config) { c.Address = "" }, "-address"},
		{"no scheme", func(c *Config) { c.Address = "127.0.0.1:8200" }, "-address"},
		{"ftp scheme", func(c *Config) { c.Address = "ftp://h" }, "-address"},
		{"no host", func(c *Config) { c.Address = "http://" }, "-address"},
		{"query", func(c *Config) { c.Address = "http://h/?x=1" }, "-address"},
		{"user info", func(c *Config) { c.Address = "http://u:p@h/" }, "-address"},
		{"bad url", func(c *Config) { c.Address = "http://[::1" }, "-address"},
		{"unix socket", func(c *Config) { c.Address = "unix:///run/edgevault-agent.sock" }, ""},
		{"unix socket with a host", func(c *Config) { c.Address = "unix://run/agent.sock" }, "-address"},
		{"unix socket without a path", func(c *Config) { c.Address = "unix:///" }, "-address"},
		{"unix socket, relative", func(c *Config) { c.Address = "unix:agent.sock" }, "-address"},
		{"unix socket with a query", func(c *Config) { c.Address = "unix:///a.sock?x=1" }, "-address"},
		{"missing token", func(c *Config) { c.Token = "" }, "-token"},
		{"token with newline", func(c *Config) { c.Token = "a\r\nX-Evil: 1" }, "-token"},
		{"nested mount", func(c *Config) { c.Mount = "team/kv" }, ""},
		{"mount slashes trimmed", func(c *Config) { c.Mount = "/secret/" }, ""},
		{"empty mount", func(c *Config) { c.Mount = "/" }, "-mount"},
		{"dotdot mount", func(c *Config) { c.Mount = "a/../b" }, "-mount"},
		{"empty segment", func(c *Config) { c.Mount = "a//b" }, "-mount"},
		{"space in mount", func(c *Config) { c.Mount = "my kv" }, "-mount"},
		{"query in mount", func(c *Config) { c.Mount = "kv?x" }, "-mount"},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, "-c"},
		{"huge concurrency", func(c *Config) { c.Concurrency = MaxConcurrency + 1 }, "-c"},
		{"zero duration", func(c *Config) { c.Duration = 0 }, "-d"},
		{"negative warmup", func(c *Config) { c.Warmup = -time.Second }, "-warmup"},
		{"no warmup", func(c *Config) { c.Warmup = 0 }, ""},
		{"zero keys", func(c *Config) { c.Keys = 0 }, "-keys"},
		{"too many keys", func(c *Config) { c.Keys = MaxKeys + 1 }, "-keys"},
		{"zero value size", func(c *Config) { c.ValueSize = 0 }, "-value-size"},
		{"huge value size", func(c *Config) { c.ValueSize = MaxValueSize + 1 }, "-value-size"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "-timeout"},
		{"default mount", func(c *Config) { c.Mount = "" }, ""},
		{"pki-issue", func(c *Config) { c.Op = OpPKIIssue }, ""},
		{"db-creds", func(c *Config) { c.Op, c.PGURL = OpDBCreds, "postgres://u:pw@127.0.0.1:5432/postgres" }, ""},
		{"db-creds without -pg-url", func(c *Config) { c.Op = OpDBCreds }, "-pg-url"},
		{"db-creds, -pg-url not postgres", func(c *Config) { c.Op, c.PGURL = OpDBCreds, "mysql://u:secret-token@h/d" }, "-pg-url"},
		{"db-creds, -pg-url without password", func(c *Config) { c.Op, c.PGURL = OpDBCreds, "postgres://u@h/d" }, "-pg-url"},
		{"db-creds, -pg-url unparsable", func(c *Config) { c.Op, c.PGURL = OpDBCreds, "postgres://u:secret-token@[::1/d" }, "-pg-url"},
		{"-pg-url ignored by other ops", func(c *Config) { c.PGURL = "garbage" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Token = "s.secret-token"
			tt.change(&cfg)
			err := cfg.Validate()
			if tt.flag == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error naming %s, got nil", tt.flag)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.flag+":") {
				t.Errorf("error %q does not name %s", err, tt.flag)
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Errorf("error %q shows the token", err)
			}
		})
	}
}
