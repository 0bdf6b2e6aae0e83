package core

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lessorhq/lessor/pkg/audit"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Audit devices.

const (
	auditKeyPath     = "core/audit-hmac-key"
	auditDevicesPath = "core/audit"
)

func loadAudit(tx storage.Tx) ([]audit.Device, []byte, error) {
	key, err := tx.Get(auditKeyPath)
	if err != nil {
		return nil, nil, err
	}
	raw, err := tx.Get(auditDevicesPath)
	if err != nil || raw == nil {
		return nil, key, err
	}
	var ds []audit.Device
	if err := json.Unmarshal(raw, &ds); err != nil {
		return nil, nil, fmt.Errorf("decode audit devices: %w", err)
	}
	return ds, key, nil
}

func (c *Core) auditBroker(ctx context.Context) (*audit.Broker, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.brokerOK {
		return c.broker, nil
	}
	var ds []audit.Device
	var key []byte
	if err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		ds, key, err = loadAudit(tx)
		return err
	}); err != nil {
		return nil, err
	}
	c.broker, c.brokerOK = audit.NewBroker(ds, key, c.now), true
	return c.broker, nil
}

// prefetchedBroker is auditBroker from the audit configuration that
// prefetch read, if it read it.
func (c *Core) prefetchedBroker(ctx context.Context, pre *prefetched) (*audit.Broker, error) {
	if !pre.auditRead {
		return c.auditBroker(ctx)
	}
	if pre.auditErr != nil {
		return nil, pre.auditErr
	}
	b := audit.NewBroker(pre.devices, pre.auditKey, c.now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.brokerOK {
		return c.broker, nil
	}
	if c.brokerGen == pre.auditGen {
		c.broker, c.brokerOK = b, true
	}
	return b, nil
}

func (c *Core) resetBroker() {
	c.mu.Lock()
	c.brokerOK = false
	c.brokerGen++
	c.mu.Unlock()
}

func (c *Core) listAudit(ctx context.Context) (*logical.Response, error) {
	var ds []audit.Device
	err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		ds, _, err = loadAudit(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	data := map[string]any{}
	for _, d := range ds {
		opts := map[string]any{}
		for k, v := range d.Options {
			opts[k] = v
		}
		data[d.Path] = map[string]any{"type": d.Type, "description": d.Description, "path": d.Path, "options": opts}
	}
	return &logical.Response{Data: data}, nil
}

func (c *Core) enableAudit(ctx context.Context, path string, data map[string]any) error {
	d := audit.Device{Path: path, Type: logical.String(data["type"]), Description: logical.String(data["description"]), Options: map[string]string{}}
	if opts, ok := data["options"].(map[string]any); ok {
		for k, v := range opts {
			d.Options[k] = logical.String(v)
		}
	}
	for k, v := range data {
		switch k {
		case "type", "description", "options", "local":
		default:
			d.Options[k] = logical.String(v)
		}
	}
	if path == "" {
		return logical.Errorf("audit device path is required")
	}
	if err := audit.ValidateDevice(d); err != nil {
		return logical.Errorf("%v", err)
	}
	defer c.resetBroker()
	return c.store.Update(ctx, func(tx storage.Tx) error {
		ds, _, err := loadAudit(tx)
		if err != nil {
			return err
		}
		for _, x := range ds {
			if x.Path == path {
				return logical.Errorf("path already in use at %s", path)
			}
		}
		raw, err := json.Marshal(append(ds, d))
		if err != nil {
			return err
		}
		return tx.Put(auditDevicesPath, raw)
	})
}

func (c *Core) disableAudit(ctx context.Context, path string) error {
	defer c.resetBroker()
	return c.store.Update(ctx, func(tx storage.Tx) error {
		ds, _, err := loadAudit(tx)
		if err != nil {
			return err
		}
		kept := ds[:0]
		for _, x := range ds {
			if x.Path != path {
				kept = append(kept, x)
			}
		}
		raw, err := json.Marshal(kept)
		if err != nil {
			return err
		}
		return tx.Put(auditDevicesPath, raw)
	})
}

func (c *Core) auditHash(ctx context.Context, path, input string) (*logical.Response, error) {
	var key []byte
	var found bool
	err := c.store.View(ctx, func(tx storage.Tx) error {
		ds, k, err := loadAudit(tx)
		key = k
		for _, d := range ds {
			if d.Path == path {
				found = true
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if path != "" && !found {
		return nil, logical.Errorf("unknown audit device %s", path)
	}
	return &logical.Response{Data: map[string]any{"hash": audit.HashString(key, input)}}, nil
}

// AuditHash returns the HMAC of a value under the store's audit key, so an
// operator can grep the audit log for it.
func (c *Core) AuditHash(ctx context.Context, input string) (string, error) {
	resp, err := c.auditHash(ctx, "", input)
	if err != nil {
		return "", err
	}
	return logical.String(resp.Data["hash"]), nil
}
