package kv

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

const casIgnoredWarning = "\"cas_required\" set to false, but is mandated by backend config. This value will be ignored."

func (b *Backend) handleMetadata(ctx context.Context, req *logical.Request, key string) (*logical.Response, error) {
	if req.Operation == logical.ListOperation {
		return b.list(ctx, key)
	}
	if err := validateKey(key); err != nil {
		return nil, err
	}
	switch req.Operation {
	case logical.ReadOperation:
		return b.readMetadata(ctx, key)
	case logical.CreateOperation, logical.UpdateOperation:
		return b.writeMetadata(ctx, req, key, false)
	case logical.PatchOperation:
		return b.writeMetadata(ctx, req, key, true)
	case logical.DeleteOperation:
		return b.deleteMetadata(ctx, key)
	}
	return nil, unsupported(req)
}

// list serves LIST metadata/[prefix/]: the names one level below prefix,
// folders suffixed with "/". An empty listing is a 404, as in Vault.
func (b *Backend) list(ctx context.Context, prefix string) (*logical.Response, error) {
	if prefix != "" {
		if err := validatePath(prefix); err != nil {
			return nil, err
		}
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
	}
	keys, err := b.store.List(ctx, metaPrefix+prefix)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errNotFound
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}

// readMetadata serves GET metadata/:path.
func (b *Backend) readMetadata(ctx context.Context, key string) (*logical.Response, error) {
	m, err := b.loadMeta(ctx, key)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errNotFound
	}
	versions := make(map[string]any, len(m.versions))
	for i := range m.versions {
		v := &m.versions[i]
		versions[strconv.FormatUint(v.num, 10)] = map[string]any{
			"created_time":  formatTime(v.created),
			"deletion_time": formatTime(v.deletion),
			"destroyed":     v.destroyed,
		}
	}
	return &logical.Response{Data: map[string]any{
		"versions":             versions,
		"current_version":      int64(m.current),
		"oldest_version":       int64(m.oldest),
		"created_time":         formatTime(m.created),
		"updated_time":         formatTime(m.updated),
		"max_versions":         int64(m.maxVersions),
		"cas_required":         m.casRequired,
		"delete_version_after": m.deleteAfter.String(),
		"custom_metadata":      customOut(m.custom),
	}}, nil
}

// metaUpdate is a parsed metadata write or patch.
type metaUpdate struct {
	hasMax, hasCAS, hasDVA, hasCustom bool
	maxVersions                       uint32
	casRequired                       bool
	deleteAfter                       time.Duration
	custom                            map[string]string
	customDel                         []string
	customClear                       bool
}

// parseMetaUpdate reads the fields of a metadata write. In a patch, a null
// field resets it (RFC 7396) and custom_metadata merges key by key.
func parseMetaUpdate(data map[string]any, patch bool) (*metaUpdate, error) {
	if err := logical.CheckFields(data, "max_versions", "cas_required", "delete_version_after", "custom_metadata"); err != nil {
		return nil, err
	}
	u := &metaUpdate{}
	var err error
	// A present null resets the field to its zero value.
	for _, f := range []struct {
		name string
		set  *bool
	}{{"max_versions", &u.hasMax}, {"cas_required", &u.hasCAS}, {"delete_version_after", &u.hasDVA}} {
		if v, ok := data[f.name]; ok && v == nil {
			*f.set = true
		}
	}
	var ok bool
	if u.maxVersions, ok, err = parseMaxVersions(data); err != nil {
		return nil, err
	}
	u.hasMax = u.hasMax || ok
	if u.casRequired, ok, err = logical.Bool(data, "cas_required"); err != nil {
		return nil, err
	}
	u.hasCAS = u.hasCAS || ok
	d, ok, err := logical.Duration(data, "delete_version_after")
	if err != nil {
		return nil, err
	}
	u.deleteAfter = d
	u.hasDVA = u.hasDVA || ok
	if v, ok := data["custom_metadata"]; ok {
		u.hasCustom = true
		if v == nil {
			u.customClear = true
		} else if u.custom, u.customDel, err = parseCustom(v, patch); err != nil {
			return nil, err
		}
		if !patch {
			// A write replaces the whole map.
			u.customClear = true
		}
	}
	return u, nil
}

// apply changes m as u says.
func (u *metaUpdate) apply(m *keyMeta) {
	if u.hasMax {
		m.maxVersions = u.maxVersions
	}
	if u.hasCAS {
		m.casRequired = u.casRequired
	}
	if u.hasDVA {
		m.deleteAfter = u.deleteAfter
	}
	if !u.hasCustom {
		return
	}
	if u.customClear {
		m.custom = nil
	}
	if len(u.custom) > 0 && m.custom == nil {
		m.custom = make(map[string]string, len(u.custom))
	}
	for k, v := range u.custom {
		m.custom[k] = v
	}
	for _, k := range u.customDel {
		delete(m.custom, k)
	}
}

// writeMetadata serves POST/PUT (patch=false; creates the key if needed)
// and PATCH (patch=true; the key must exist) on metadata/:path. Only the
// fields present are changed. No new version is created.
func (b *Backend) writeMetadata(ctx context.Context, req *logical.Request, key string, patch bool) (*logical.Response, error) {
	u, err := parseMetaUpdate(req.Data, patch)
	if err != nil {
		return nil, err
	}
	if !patch {
		if err := validateCustom(u.custom); err != nil {
			return nil, err
		}
		if !u.hasMax && !u.hasCAS && !u.hasDVA && !u.hasCustom {
			return nil, nil
		}
	}
	cfg, err := b.loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	var resp *logical.Response
	if u.hasCAS && !u.casRequired && cfg.CASRequired {
		resp = &logical.Response{Warnings: []string{casIgnoredWarning}}
	}

	lock := b.lockFor(key)
	lock.Lock()
	defer lock.Unlock()
	m, err := b.loadMeta(ctx, key)
	if err != nil {
		return nil, err
	}
	if m == nil {
		if patch {
			return nil, errNotFound
		}
		now := b.now()
		m = &keyMeta{created: now, updated: now}
	}
	u.apply(m)
	if patch {
		if err := validateCustom(m.custom); err != nil {
			return nil, err
		}
	}
	if err := b.commit(ctx, key, []storage.Op{putMetaOp(key, m)}); err != nil {
		return nil, err
	}
	return resp, nil
}

// deleteMetadata serves DELETE metadata/:path: every version and the
// metadata go, in one transaction.
func (b *Backend) deleteMetadata(ctx context.Context, key string) (*logical.Response, error) {
	lock := b.lockFor(key)
	lock.Lock()
	defer lock.Unlock()
	m, err := b.loadMeta(ctx, key)
	if err != nil || m == nil {
		return nil, err
	}
	ops := make([]storage.Op, 0, len(m.versions)+1)
	for _, v := range m.versions {
		if v.num != m.current && !v.destroyed {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: versionKey(key, v.num)})
		}
	}
	ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: metaKey(key)})
	return nil, b.commit(ctx, key, ops)
}
