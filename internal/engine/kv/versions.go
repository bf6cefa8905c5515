package kv

import (
	"context"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// handleVersions serves POST/PUT on delete/:path, undelete/:path and
// destroy/:path with {"versions": [...]}. Versions that do not exist, or
// are already in the requested state, are skipped as Vault does; a missing
// key is not an error.
func (b *Backend) handleVersions(ctx context.Context, req *logical.Request, action, key string) (*logical.Response, error) {
	if err := validateKey(key); err != nil {
		return nil, err
	}
	if req.Operation != logical.CreateOperation && req.Operation != logical.UpdateOperation {
		return nil, unsupported(req)
	}
	if err := logical.CheckFields(req.Data, "versions"); err != nil {
		return nil, err
	}
	versions, err := parseVersions(req.Data)
	if err != nil {
		return nil, err
	}
	var cfg *mountConfig
	if action == "undelete" {
		if cfg, err = b.loadConfig(ctx); err != nil {
			return nil, err
		}
	}

	lock := b.lockFor(key)
	lock.Lock()
	defer lock.Unlock()
	m, err := b.loadMeta(ctx, key)
	if err != nil || m == nil {
		return nil, err
	}
	now := b.now()
	var ops []storage.Op
	changed := false
	for _, n := range versions {
		vm := m.find(n)
		if vm == nil || vm.destroyed {
			continue
		}
		switch action {
		case "delete":
			if vm.deletedAt(now) {
				continue
			}
			vm.deletion = now
		case "undelete":
			vm.deletion = cfg.deletionTime(now, m)
		case "destroy":
			vm.destroyed = true
			if n == m.current {
				m.curData = nil
			} else {
				ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: versionKey(key, n)})
			}
		}
		changed = true
	}
	if !changed {
		return nil, nil
	}
	ops = append(ops, putMetaOp(key, m))
	return nil, b.commit(ctx, key, ops)
}
