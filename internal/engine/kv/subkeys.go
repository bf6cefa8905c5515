package kv

import (
	"context"

	"github.com/edgevault/edgevault/internal/logical"
)

// handleSubkeys serves GET subkeys/:path[?version=N&depth=D]: the secret's
// structure with every leaf replaced by null. depth 0 means unlimited;
// otherwise keys at that depth are leaves. A deleted or destroyed version
// answers 404 with {"subkeys": null, "metadata": {...}}.
func (b *Backend) handleSubkeys(ctx context.Context, req *logical.Request, key string) (*logical.Response, error) {
	if err := validateKey(key); err != nil {
		return nil, err
	}
	if req.Operation != logical.ReadOperation {
		return nil, unsupported(req)
	}
	depth, err := nonNegativeInt(req, "depth")
	if err != nil {
		return nil, err
	}
	resp, raw, err := b.readVersion(ctx, req, key, "subkeys")
	if err != nil || raw == nil {
		return resp, err
	}
	data, err := decodeData(raw)
	if err != nil {
		return nil, err
	}
	resp.Data["subkeys"] = subkeys(data, 1, depth)
	return resp, nil
}

// subkeys returns obj's keys with leaves (non-objects, empty objects and
// keys at maxDepth) set to nil. level is the depth of obj's own keys.
func subkeys(obj map[string]any, level, maxDepth uint64) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		child, ok := v.(map[string]any)
		if !ok || len(child) == 0 || (maxDepth != 0 && level >= maxDepth) {
			out[k] = nil
			continue
		}
		out[k] = subkeys(child, level+1, maxDepth)
	}
	return out
}
