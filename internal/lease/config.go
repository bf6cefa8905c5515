package lease

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultRetryMin is the first revocation retry delay.
	DefaultRetryMin = 5 * time.Second
	// DefaultRetryMax caps the revocation retry delay.
	DefaultRetryMax = 10 * time.Minute
	// DefaultRevokeTimeout bounds one engine Revoke or Renew call.
	DefaultRevokeTimeout = 30 * time.Second
	// DefaultWorkers is how many expired leases are revoked at once. Many
	// concurrent revocations let the storage backend group their commits.
	DefaultWorkers = 64
	// DefaultMaxTTL is the cap of leases registered with MaxTTL 0 (Vault's
	// system max_lease_ttl default, 32 days).
	DefaultMaxTTL = 768 * time.Hour
)

// Config configures a Manager. Field comments are its documentation.
type Config struct {
	// Store holds the leases of one zone; required. Give the manager a view
	// of its own (storage.NewView(zoneStore, "sys/expire/")): it owns every
	// key in it.
	Store storage.Backend
	// Zone is recorded in every lease registered; informational.
	Zone string
	// Revokers returns the engine responsible for a lease path
	// ("database/creds/ro"), or nil when no mount claims it (the lease's
	// revocation then fails with ErrNoRevoker and is retried). Required.
	// See MountTable.
	Revokers func(path string) Revoker
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives revocation failures and forced revocations (lease ids
	// and paths, never Data); nil discards.
	Logger *slog.Logger
	// RetryMin is the delay before the first revocation retry; it doubles
	// per failure up to RetryMax. 0 means the defaults; negative is an error.
	RetryMin, RetryMax time.Duration
	// RevokeTimeout bounds each engine Revoke/Renew call. 0 means default.
	RevokeTimeout time.Duration
	// Workers is the number of goroutines revoking due leases. 0 means
	// DefaultWorkers.
	Workers int
	// DefaultMaxTTL caps leases registered with MaxTTL 0.
	DefaultMaxTTL time.Duration
	// Rand is the source of generated lease ids; nil means crypto/rand.
	Rand io.Reader
}

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.Store == nil {
		return c, errors.New("lease: config: Store is required")
	}
	if c.Revokers == nil {
		return c, errors.New("lease: config: Revokers is required")
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RetryMin", &c.RetryMin, DefaultRetryMin},
		{"RetryMax", &c.RetryMax, DefaultRetryMax},
		{"RevokeTimeout", &c.RevokeTimeout, DefaultRevokeTimeout},
		{"DefaultMaxTTL", &c.DefaultMaxTTL, DefaultMaxTTL},
	} {
		if *f.v < 0 {
			return c, fmt.Errorf("lease: config: %s must not be negative, got %s", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.RetryMax < c.RetryMin {
		return c, fmt.Errorf("lease: config: RetryMax (%s) is below RetryMin (%s)", c.RetryMax, c.RetryMin)
	}
	switch {
	case c.Workers < 0:
		return c, fmt.Errorf("lease: config: Workers must not be negative, got %d", c.Workers)
	case c.Workers == 0:
		c.Workers = DefaultWorkers
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return c, nil
}

// backoff returns the delay before retry number n (n ≥ 1).
func (c *Config) backoff(n int) time.Duration {
	d := c.RetryMin
	for i := 1; i < n && d < c.RetryMax; i++ {
		d *= 2
	}
	return min(d, c.RetryMax)
}

// ctxTimeout bounds one engine call.
func (c *Config) ctxTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.RevokeTimeout)
}
