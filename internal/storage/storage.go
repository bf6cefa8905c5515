// Package storage defines the physical storage contract every edgevault
// backend implements, and the helpers shared by all of them.
//
// A Backend is a flat, ordered key space of byte values. Keys are
// slash-separated logical paths ("sys/token/id/abc"). Backends know nothing
// about encryption: the barrier package encrypts values before they get here.
//
// Durability: Put, Delete and Txn return nil only after the change is durable
// on the backend's medium (for bbolt: committed and fsynced). A change whose
// call returned an error was not applied, in whole or in part.
package storage

import (
	"context"
	"errors"
)

// Errors returned by backends. Match them with errors.Is.
var (
	// ErrNotFound is returned by Get when the key does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrInvalidKey is returned for an empty key, a key with a NUL byte, or a
	// key longer than MaxKeyLen.
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("storage: backend closed")
)

// MaxKeyLen is the longest key any backend accepts.
const MaxKeyLen = 2048

// OpKind says what an Op does.
type OpKind uint8

const (
	// OpPut stores Value at Key.
	OpPut OpKind = iota + 1
	// OpDelete removes Key; deleting a missing key is not an error.
	OpDelete
)

// Op is one change inside a transaction.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte // only for OpPut
}

// Backend is the physical store. Implementations are safe for concurrent use.
//
// Values passed in and returned are owned by the caller: a backend copies
// what it keeps and never hands out memory it will later modify.
type Backend interface {
	// Get returns the value stored at key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores value at key, durably, before returning nil.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key, durably. Deleting a missing key returns nil.
	Delete(ctx context.Context, key string) error
	// List returns the names directly under prefix, sorted, one level deep as
	// Vault does: "a/b" and "a/c/d" under "a/" list as "b" and "c/".
	List(ctx context.Context, prefix string) ([]string, error)
	// Txn applies all ops atomically and durably: after it returns nil every
	// op is visible and durable; after an error none is.
	Txn(ctx context.Context, ops []Op) error
}

// Closer is implemented by backends holding resources (files, goroutines).
type Closer interface {
	Close() error
}

// ValidateKey reports whether key is acceptable to every backend.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return ErrInvalidKey
	}
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return ErrInvalidKey
		}
	}
	return nil
}
