package storage

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
)

// errReadOnly is returned by writes inside View.
var errReadOnly = errors.New("write in a read-only transaction")

// Memory is an in-memory Store for unit tests. Update stages its writes and
// applies them only when fn returns nil, like the file backend.
type Memory struct {
	mu   sync.RWMutex
	data map[string][]byte
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{data: map[string][]byte{}} }

// View runs fn on a read-only snapshot.
func (m *Memory) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(&memTx{base: m.data})
}

// Update runs fn and applies its writes atomically if fn returns nil.
func (m *Memory) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	tx := &memTx{base: m.data, writes: map[string][]byte{}, writable: true}
	if err := fn(tx); err != nil {
		return err
	}
	for k, v := range tx.writes {
		if v == nil {
			delete(m.data, k)
		} else {
			m.data[k] = v
		}
	}
	return nil
}

type memTx struct {
	base     map[string][]byte
	writes   map[string][]byte // nil value = deleted
	writable bool
}

func (t *memTx) Get(key string) ([]byte, error) {
	if v, ok := t.writes[key]; ok {
		return clone(v), nil
	}
	return clone(t.base[key]), nil
}

func (t *memTx) Put(key string, value []byte) error {
	if !t.writable {
		return errReadOnly
	}
	if value == nil {
		value = []byte{}
	}
	t.writes[key] = clone(value)
	return nil
}

func (t *memTx) Delete(key string) error {
	if !t.writable {
		return errReadOnly
	}
	t.writes[key] = nil
	return nil
}

func (t *memTx) List(prefix string) ([]string, error) {
	var keys []string
	err := t.Walk(prefix, func(k string) error { keys = append(keys, k); return nil })
	return keys, err
}

func (t *memTx) Walk(prefix string, fn func(string) error) error {
	seen := map[string]bool{}
	for k := range t.base {
		if strings.HasPrefix(k, prefix) {
			seen[k] = true
		}
	}
	for k, v := range t.writes {
		if strings.HasPrefix(k, prefix) {
			seen[k] = v != nil
		}
	}
	keys := make([]string, 0, len(seen))
	for k, live := range seen {
		if live {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
