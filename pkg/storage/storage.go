// Package storage is lessor's physical key/value layer: a small interface
// (Get, Put, Delete, List and Walk by prefix, inside View and Update
// transactions) with a bbolt file backend and an in-memory backend for tests.
//
// Keys are slash-separated paths ("core/mounts", "logical/<uuid>/config/pg").
// Values are opaque bytes; pkg/barrier seals them before they reach a
// backend. Nothing above this package knows which backend is in use.
//
// Transactions are short: a backend may hold a cross-process lock for the
// duration of View or Update, so callers never do network I/O inside one.
package storage

import (
	"context"
	"errors"
)

// ErrStop may be returned by a Walk callback to end the walk early without
// error.
var ErrStop = errors.New("stop walk")

// Tx is one transaction's view of the store. A Tx is only valid inside the
// View or Update call that produced it and must not be retained.
type Tx interface {
	// Get returns the value stored at key, or nil and no error when the key
	// is absent.
	Get(key string) ([]byte, error)
	// Put stores value at key. It fails inside View.
	Put(key string, value []byte) error
	// Delete removes key; deleting an absent key is not an error. It fails
	// inside View.
	Delete(key string) error
	// List returns every key that starts with prefix, in byte order.
	List(prefix string) ([]string, error)
	// Walk calls fn for every key that starts with prefix, in byte order,
	// until fn returns an error. ErrStop ends the walk and Walk returns nil.
	Walk(prefix string, fn func(key string) error) error
}

// Store runs transactions. Update commits atomically and durably when fn
// returns nil and discards every write when fn returns an error; a reader
// never observes half of an Update.
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
}
