package kv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

func (b *Backend) handleData(ctx context.Context, req *logical.Request, key string) (*logical.Response, error) {
	if err := validateKey(key); err != nil {
		return nil, err
	}
	switch req.Operation {
	case logical.ReadOperation:
		return b.readData(ctx, req, key)
	case logical.CreateOperation, logical.UpdateOperation:
		return b.writeData(ctx, req, key, false)
	case logical.PatchOperation:
		return b.writeData(ctx, req, key, true)
	case logical.DeleteOperation:
		return b.deleteLatest(ctx, key)
	}
	return nil, unsupported(req)
}

// decodeData parses stored JSON data, keeping numbers as json.Number.
func decodeData(raw []byte) (map[string]any, error) {
	m, err := parseJSONObject(raw)
	if err != nil {
		return nil, fmt.Errorf("kv: %w: version data: %v", ErrCorrupt, err)
	}
	return m, nil
}

// lookupVersion resolves the version a read asks for (0 = current) and
// returns its metadata and JSON data. data is nil, with resp404 set, when
// the version is deleted or destroyed; vm is nil when it does not exist.
func (b *Backend) lookupVersion(ctx context.Context, key string, want uint64) (m *keyMeta, vm *versionMeta, data []byte, err error) {
	m, err = b.loadMeta(ctx, key)
	if err != nil || m == nil {
		return nil, nil, nil, err
	}
	n := m.current
	if want > 0 {
		n = want
	}
	if vm = m.find(n); vm == nil {
		return m, nil, nil, nil
	}
	if vm.destroyed || vm.deletedAt(b.now()) {
		return m, vm, nil, nil
	}
	if n == m.current {
		if m.curData == nil {
			return nil, nil, nil, fmt.Errorf("kv: %w: current version has no data", ErrCorrupt)
		}
		return m, vm, m.curData, nil
	}
	// An older version lives in its own record. Re-read under the path's
	// read lock so a concurrent prune or destroy cannot remove it between
	// the two Gets.
	lock := b.lockFor(key)
	lock.RLock()
	defer lock.RUnlock()
	m, err = b.loadMeta(ctx, key)
	if err != nil || m == nil {
		return nil, nil, nil, err
	}
	if vm = m.find(n); vm == nil {
		return m, nil, nil, nil
	}
	if vm.destroyed || vm.deletedAt(b.now()) {
		return m, vm, nil, nil
	}
	if n == m.current {
		return m, vm, m.curData, nil
	}
	data, err = b.loadVersionData(ctx, key, n)
	return m, vm, data, err
}

// readData serves GET data/:path[?version=N]. A deleted or destroyed
// version answers 404 with {"data": null, "metadata": {...}} as Vault does.
func (b *Backend) readData(ctx context.Context, req *logical.Request, key string) (*logical.Response, error) {
	resp, raw, err := b.readVersion(ctx, req, key, "data")
	if err != nil || raw == nil {
		return resp, err
	}
	// The stored bytes are the compact JSON the client wrote: serve them as
	// they are instead of decoding and re-encoding them on every read.
	resp.Data["data"] = json.RawMessage(raw)
	return resp, nil
}

// readVersion resolves the version a read asks for (query or data
// "version", 0 = current) and starts its response: {field: null, metadata}.
// raw is the version's JSON data, or nil with the response's status set to
// 404 when the version is deleted or destroyed, as Vault answers.
func (b *Backend) readVersion(ctx context.Context, req *logical.Request, key, field string) (resp *logical.Response, raw []byte, err error) {
	want, err := nonNegativeInt(req, "version")
	if err != nil {
		return nil, nil, err
	}
	m, vm, raw, err := b.lookupVersion(ctx, key, want)
	if err != nil {
		return nil, nil, err
	}
	if vm == nil {
		return nil, nil, errNotFound
	}
	resp = &logical.Response{Data: map[string]any{
		field:      nil,
		"metadata": versionInfo(vm, m.custom),
	}}
	if raw == nil {
		resp.StatusCode = http.StatusNotFound
	}
	return resp, raw, nil
}

// checkCAS enforces options.cas and cas_required.
func checkCAS(c *mountConfig, m *keyMeta, cas uint64, hasCAS bool) error {
	if hasCAS {
		if cas != m.current {
			return errCASMismatch
		}
		return nil
	}
	if c.CASRequired || m.casRequired {
		return errCASRequired
	}
	return nil
}

// writeData serves POST/PUT (patch=false) and PATCH (patch=true) on
// data/:path: a new version in one transaction.
func (b *Backend) writeData(ctx context.Context, req *logical.Request, key string, patch bool) (*logical.Response, error) {
	if err := logical.CheckFields(req.Data, "data", "options"); err != nil {
		return nil, err
	}
	obj, err := parseDataObject(req.Data)
	if err != nil {
		return nil, err
	}
	cas, hasCAS, err := parseOptions(req.Data)
	if err != nil {
		return nil, err
	}
	var encoded []byte
	if !patch {
		if encoded, err = encodeData(obj); err != nil {
			return nil, err
		}
	}
	cfg, err := b.loadConfig(ctx)
	if err != nil {
		return nil, err
	}

	lock := b.lockFor(key)
	lock.Lock()
	defer lock.Unlock()

	m, err := b.loadMeta(ctx, key)
	if err != nil {
		return nil, err
	}
	now := b.now()
	if patch {
		if m == nil {
			return nil, errNotFound
		}
		if err := checkCAS(cfg, m, cas, hasCAS); err != nil {
			return nil, err
		}
		vm := m.find(m.current)
		if vm == nil {
			return nil, errNotFound
		}
		if vm.destroyed || vm.deletedAt(now) {
			data := versionInfo(vm, m.custom)
			return &logical.Response{Data: data, StatusCode: http.StatusNotFound}, nil
		}
		cur, err := decodeData(m.curData)
		if err != nil {
			return nil, err
		}
		merged, _ := mergePatch(cur, obj).(map[string]any)
		if encoded, err = encodeData(merged); err != nil {
			return nil, err
		}
	} else {
		if m == nil {
			m = &keyMeta{created: now}
		}
		if err := checkCAS(cfg, m, cas, hasCAS); err != nil {
			return nil, err
		}
	}
	ops, vm := b.addVersion(key, m, cfg, encoded, now)
	if err := b.commit(ctx, key, ops); err != nil {
		return nil, err
	}
	return &logical.Response{Data: versionInfo(&vm, m.custom)}, nil
}

// encodeData serialises a data object for storage; json.Number values are
// written exactly as given.
func encodeData(obj map[string]any) ([]byte, error) {
	if obj == nil {
		obj = map[string]any{}
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, logical.InvalidRequest("field \"data\": cannot be encoded as JSON")
	}
	return raw, nil
}

// addVersion appends version current+1 holding data to m, prunes versions
// beyond max_versions, and returns the storage ops that make it so: the
// previous current data moves to its own record, pruned records go, and the
// metadata (with the new data inline) is rewritten.
func (b *Backend) addVersion(key string, m *keyMeta, cfg *mountConfig, data []byte, now int64) ([]storage.Op, versionMeta) {
	prev := m.current
	var prevLive bool
	if pv := m.find(prev); pv != nil && !pv.destroyed && m.curData != nil {
		prevLive = true
	}
	prevData := m.curData

	m.current++
	vm := versionMeta{num: m.current, created: now, deletion: cfg.deletionTime(now, m)}
	m.versions = append(m.versions, vm)
	m.updated = now
	if m.created == 0 {
		m.created = now
	}
	m.curData = data

	ops := make([]storage.Op, 0, 3)
	maxV := cfg.maxVersionsFor(m)
	if m.current-m.oldest >= maxV {
		cut := m.current - maxV // versions <= cut go
		keep := m.versions[:0]
		pruned := 0
		for _, v := range m.versions {
			if v.num > cut {
				keep = append(keep, v)
				continue
			}
			pruned++
			if v.num == prev {
				prevLive = false
			} else if !v.destroyed {
				ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: versionKey(key, v.num)})
			}
		}
		m.versions = keep
		m.oldest = cut + 1
		if pruned > 0 {
			b.log.Debug("kv: pruned old versions", "count", pruned)
		}
	}
	if prevLive {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: versionKey(key, prev), Value: encodeVersion(prevData)})
	}
	ops = append(ops, putMetaOp(key, m))
	return ops, vm
}

// deleteLatest soft-deletes the current version (DELETE data/:path).
func (b *Backend) deleteLatest(ctx context.Context, key string) (*logical.Response, error) {
	lock := b.lockFor(key)
	lock.Lock()
	defer lock.Unlock()
	m, err := b.loadMeta(ctx, key)
	if err != nil || m == nil {
		return nil, err
	}
	now := b.now()
	vm := m.find(m.current)
	if vm == nil || vm.destroyed || vm.deletedAt(now) {
		return nil, nil
	}
	vm.deletion = now
	return nil, b.commit(ctx, key, []storage.Op{putMetaOp(key, m)})
}

// mergePatch applies an RFC 7396 JSON merge patch to target and returns
// the result. target is modified in place when it is an object.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = make(map[string]any, len(p))
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}
