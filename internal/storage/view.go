package storage

import (
	"context"
	"strings"
)

// View is a Backend confined to the keys under one prefix of another
// Backend. Engines receive a View, so a mount cannot name keys outside it.
type View struct {
	b      Backend
	prefix string
}

// NewView returns b restricted to keys beginning with prefix, which should
// end in "/". Keys passed to the view are relative to prefix.
func NewView(b Backend, prefix string) *View {
	return &View{b: b, prefix: prefix}
}

// Prefix returns the view's prefix in the underlying backend.
func (v *View) Prefix() string { return v.prefix }

func (v *View) key(k string) (string, error) {
	if k == "" || strings.Contains(k, "\x00") {
		return "", ErrInvalidKey
	}
	return v.prefix + k, nil
}

// Get reads key under the view's prefix.
func (v *View) Get(ctx context.Context, key string) ([]byte, error) {
	k, err := v.key(key)
	if err != nil {
		return nil, err
	}
	return v.b.Get(ctx, k)
}

// Put writes key under the view's prefix.
func (v *View) Put(ctx context.Context, key string, value []byte) error {
	k, err := v.key(key)
	if err != nil {
		return err
	}
	return v.b.Put(ctx, k, value)
}

// Delete removes key under the view's prefix.
func (v *View) Delete(ctx context.Context, key string) error {
	k, err := v.key(key)
	if err != nil {
		return err
	}
	return v.b.Delete(ctx, k)
}

// List lists one level under prefix inside the view.
func (v *View) List(ctx context.Context, prefix string) ([]string, error) {
	return v.b.List(ctx, v.prefix+prefix)
}

// Txn applies ops, each key taken relative to the view's prefix.
func (v *View) Txn(ctx context.Context, ops []Op) error {
	out := make([]Op, len(ops))
	for i, op := range ops {
		k, err := v.key(op.Key)
		if err != nil {
			return err
		}
		out[i] = Op{Kind: op.Kind, Key: k, Value: op.Value}
	}
	return v.b.Txn(ctx, out)
}
