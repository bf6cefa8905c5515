package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// mountConfig is the mount-wide configuration stored at "config".
type mountConfig struct {
	MaxVersions uint32 `json:"max_versions"`
	CASRequired bool   `json:"cas_required"`
	// DeleteVersionAfter < 0 disables delete_version_after on every key.
	DeleteVersionAfter time.Duration `json:"delete_version_after_ns"`
}

func (c *mountConfig) dvaDisabled() bool { return c.DeleteVersionAfter < 0 }

// maxVersionsFor is the number of versions kept for a key: its own setting,
// else the mount's, else DefaultMaxVersions.
func (c *mountConfig) maxVersionsFor(m *keyMeta) uint64 {
	switch {
	case m.maxVersions > 0:
		return uint64(m.maxVersions)
	case c.MaxVersions > 0:
		return uint64(c.MaxVersions)
	}
	return DefaultMaxVersions
}

// deletionTime is the deletion_time a version created (or undeleted) at t
// gets: t plus the smaller non-zero of the mount's and the key's
// delete_version_after, or 0 when neither is set or the mount disables it.
func (c *mountConfig) deletionTime(t int64, m *keyMeta) int64 {
	if c.dvaDisabled() {
		return 0
	}
	d := m.deleteAfter
	if mount := c.DeleteVersionAfter; mount > 0 && (d == 0 || mount < d) {
		d = mount
	}
	if d <= 0 {
		return 0
	}
	return t + int64(d)
}

func (b *Backend) loadConfig(ctx context.Context) (*mountConfig, error) {
	c := &mountConfig{}
	raw, err := b.store.Get(ctx, configKey)
	if errors.Is(err, storage.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv: read config: %w", err)
	}
	if err := json.Unmarshal(raw, c); err != nil {
		b.log.Error("kv: undecodable config record", "err", err)
		return nil, fmt.Errorf("kv: read config: %w: %v", ErrCorrupt, err)
	}
	return c, nil
}

func (b *Backend) handleConfig(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	switch req.Operation {
	case logical.ReadOperation:
		c, err := b.loadConfig(ctx)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{
			"max_versions":         int64(c.MaxVersions),
			"cas_required":         c.CASRequired,
			"delete_version_after": c.DeleteVersionAfter.String(),
		}}, nil
	case logical.CreateOperation, logical.UpdateOperation:
		return b.writeConfig(ctx, req)
	}
	return nil, unsupported(req)
}

// writeConfig updates the fields present in the request. A negative
// delete_version_after disables it on all keys; zero clears it.
func (b *Backend) writeConfig(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if err := logical.CheckFields(req.Data, "max_versions", "cas_required", "delete_version_after"); err != nil {
		return nil, err
	}
	maxV, hasMax, err := parseMaxVersions(req.Data)
	if err != nil {
		return nil, err
	}
	cas, hasCAS, err := logical.Bool(req.Data, "cas_required")
	if err != nil {
		return nil, err
	}
	dva, hasDVA, err := parseSignedDuration(req.Data, "delete_version_after")
	if err != nil {
		return nil, err
	}
	if !hasMax && !hasCAS && !hasDVA {
		return nil, nil
	}
	if dva < 0 {
		dva = -time.Second
	}
	b.configMu.Lock()
	defer b.configMu.Unlock()
	c, err := b.loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	if hasMax {
		c.MaxVersions = maxV
	}
	if hasCAS {
		c.CASRequired = cas
	}
	if hasDVA {
		c.DeleteVersionAfter = dva
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("kv: encode config: %w", err)
	}
	if err := b.commit(ctx, "", []storage.Op{{Kind: storage.OpPut, Key: configKey, Value: raw}}); err != nil {
		return nil, err
	}
	return nil, nil
}
