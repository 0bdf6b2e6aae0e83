package core

import (
	"bytes"
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

// auditConfig is the audit configuration as stored: the HMAC key and the
// devices' JSON.
type auditConfig struct{ key, devices []byte }

func readAuditConfig(tx storage.Tx) (auditConfig, error) {
	key, err := tx.Get(auditKeyPath)
	if err != nil {
		return auditConfig{}, err
	}
	devices, err := tx.Get(auditDevicesPath)
	return auditConfig{key: key, devices: devices}, err
}

func (a auditConfig) decode() ([]audit.Device, error) {
	if a.devices == nil {
		return nil, nil
	}
	var ds []audit.Device
	if err := json.Unmarshal(a.devices, &ds); err != nil {
		return nil, fmt.Errorf("decode audit devices: %w", err)
	}
	return ds, nil
}

func loadAudit(tx storage.Tx) ([]audit.Device, []byte, error) {
	a, err := readAuditConfig(tx)
	if err != nil {
		return nil, nil, err
	}
	ds, err := a.decode()
	if err != nil {
		return nil, nil, err
	}
	return ds, a.key, nil
}

// auditBroker reads the audit configuration and returns its broker.
func (c *Core) auditBroker(ctx context.Context) (*audit.Broker, error) {
	var a auditConfig
	if err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		a, err = readAuditConfig(tx)
		return err
	}); err != nil {
		return nil, err
	}
	return c.brokerFor(a)
}

// prefetchedBroker is the broker of the audit configuration that prefetch
// read.
func (c *Core) prefetchedBroker(pre *prefetched) (*audit.Broker, error) {
	return c.brokerFor(pre.audit)
}

// brokerFor returns the broker of the audit configuration a: the one the
// last request used if the configuration is the same, so that it is not
// decoded on every request.
func (c *Core) brokerFor(a auditConfig) (*audit.Broker, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broker != nil && bytes.Equal(c.brokerCfg.key, a.key) && bytes.Equal(c.brokerCfg.devices, a.devices) {
		return c.broker, nil
	}
	ds, err := a.decode()
	if err != nil {
		return nil, err
	}
	c.broker = audit.NewBroker(ds, a.key, c.now)
	c.brokerCfg = auditConfig{key: bytes.Clone(a.key), devices: bytes.Clone(a.devices)}
	return c.broker, nil
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
	if c.served {
		// A device writes as the account that runs the server, to the
		// file the request names, with paths the caller chooses in every
		// line: a ~/.profile or ~/.ssh/rc of the account's, created or
		// appended to, would run them in its next login, and any other
		// file it may write could be created or spoiled. The caller is
		// not that account; the account enables devices itself, which the
		// server follows at its next request.
		return logical.Errorf("audit devices are not enabled through lessor serve, which would write the file as the account it runs as: run `lessor audit enable` as that account, on the server's host")
	}
	if err := audit.ValidateDevice(d); err != nil {
		return logical.Errorf("%v", err)
	}
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
