package core

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/lessorhq/lessor/pkg/failpoint"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/passwordpolicy"
	"github.com/lessorhq/lessor/pkg/storage"
)

// Password policies, Vault's sys/policies/password/<name>: the rules a
// database connection's password_policy names for the passwords it
// generates. Stored as {"policy": <text>} under passwordPolicyPrefix.
const passwordPolicyPrefix = "sys/password-policy/"

var passwordPolicyFields = logical.FieldSchema{
	"policy": {Type: logical.TypeString, Description: "the policy: HCL or JSON with length and rule \"charset\" blocks, optionally base64"},
}

// passwordPolicyNameRE keeps a name to one path segment of word
// characters, "-" and ".".
var passwordPolicyNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[\w.-]+$`) })

// ErrNoPasswordPolicy is in the chain of the error for a password policy
// that does not exist.
var ErrNoPasswordPolicy = errors.New("no password policy found")

// storedPasswordPolicy is a password policy's record. Sudo and Writer say
// who wrote it last: a token with sudo on its path, or else the token with
// accessor Writer (both unset for a record written before lessor kept
// them); see logical.PasswordPolicyWriters.
type storedPasswordPolicy struct {
	Policy string `json:"policy"`
	Sudo   bool   `json:"sudo,omitempty"`
	Writer string `json:"writer,omitempty"`
}

func loadPasswordPolicy(tx storage.Tx, name string) (string, bool, error) {
	sp, ok, err := loadPasswordPolicyRecord(tx, name)
	return sp.Policy, ok, err
}

func loadPasswordPolicyRecord(tx storage.Tx, name string) (storedPasswordPolicy, bool, error) {
	var sp storedPasswordPolicy
	raw, err := tx.Get(passwordPolicyPrefix + name)
	if err != nil || raw == nil {
		return sp, false, err
	}
	if err := json.Unmarshal(raw, &sp); err != nil {
		return sp, false, fmt.Errorf("decode password policy %s: %w", name, err)
	}
	return sp, true, nil
}

// handlePasswordPolicy serves sys/policies/password/ (list),
// sys/policies/password/<name> (write, read, delete) and
// sys/policies/password/<name>/generate (read).
func (c *Core) handlePasswordPolicy(ctx context.Context, req *logical.Request, rest string) (*logical.Response, error) {
	op := req.Operation
	if rest == "" {
		if op != logical.ListOperation {
			return nil, logical.UnsupportedOperation(req)
		}
		var keys []string
		err := c.store.View(ctx, func(tx storage.Tx) error {
			return tx.Walk(passwordPolicyPrefix, func(k string) error {
				keys = append(keys, strings.TrimPrefix(k, passwordPolicyPrefix))
				return nil
			})
		})
		if err != nil || len(keys) == 0 {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"keys": keys}}, nil
	}
	name, sub, _ := strings.Cut(rest, "/")
	if !passwordPolicyNameRE().MatchString(name) {
		return nil, logical.Errorf("invalid password policy name %q: use letters, digits, \"_\", \"-\" and \".\"", name)
	}
	switch {
	case sub == "generate" && op == logical.ReadOperation:
		pw, err := c.generatePassword(ctx, name)
		if errors.Is(err, ErrNoPasswordPolicy) {
			return nil, &logical.CodedError{Status: 404, Msg: fmt.Sprintf("policy does not exist: %s", name), Cause: err}
		}
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"password": pw}}, nil
	case sub != "":
		return nil, logical.UnsupportedPath(req)
	case op == logical.ReadOperation:
		var text string
		var ok bool
		err := c.store.View(ctx, func(tx storage.Tx) error {
			var err error
			text, ok, err = loadPasswordPolicy(tx, name)
			return err
		})
		if err != nil || !ok {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"policy": text}}, nil
	case op == logical.CreateOperation || op == logical.UpdateOperation:
		// Checked again in the write's transaction, below; this first
		// check refuses before the policy is parsed.
		if err := c.checkPasswordPolicyUsers(ctx, req, name, nil); err != nil {
			return nil, err
		}
		text := logical.String(req.Data["policy"])
		if strings.TrimSpace(text) == "" {
			return nil, logical.Errorf("missing policy")
		}
		// As in Vault, the policy may come base64-encoded.
		if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text)); err == nil && len(dec) > 0 {
			text = string(dec)
		}
		if _, err := passwordpolicy.Parse(text, c.rand); err != nil {
			return nil, logical.Errorf("invalid password policy: %v", err)
		}
		sp := storedPasswordPolicy{Policy: text, Sudo: req.HasSudo}
		if !req.HasSudo {
			sp.Writer = req.TokenAccessor
		}
		raw, err := json.Marshal(sp)
		if err != nil {
			return nil, err
		}
		failpoint.Hit(failpoint.PasswordPolicyBeforeCommit)
		return nil, c.store.Update(ctx, func(tx storage.Tx) error {
			if err := c.checkPasswordPolicyUsers(ctx, req, name, tx); err != nil {
				return err
			}
			return tx.Put(passwordPolicyPrefix+name, raw)
		})
	case op == logical.DeleteOperation:
		failpoint.Hit(failpoint.PasswordPolicyBeforeCommit)
		return nil, c.store.Update(ctx, func(tx storage.Tx) error {
			if err := c.checkPasswordPolicyUsers(ctx, req, name, tx); err != nil {
				return err
			}
			return tx.Delete(passwordPolicyPrefix + name)
		})
	}
	return nil, logical.UnsupportedOperation(req)
}

// checkPasswordPolicyUsers refuses a write or delete of a password policy
// that some mount's settings name (a database connection, whose
// rotate-root makes the next admin password by it, or a static role),
// unless the caller has sudo on the policy's path. Otherwise a token that
// may write sys/policies/password/*, as Vault grants without sudo, could
// make the policy "length = 4, charset a" and so choose the admin's next
// password and those of every role issued after it, where changing the
// connection's password_policy itself needs the admin password. With tx,
// the mounts' settings are read in that transaction, the one that writes
// the policy, so that a connection or static role that names it commits
// either before (and this refuses) or after (and its own check, in its
// transaction, finds a policy a token without sudo wrote last).
func (c *Core) checkPasswordPolicyUsers(ctx context.Context, req *logical.Request, name string, tx storage.Tx) error {
	if req.HasSudo {
		return nil
	}
	var ms []*MountEntry
	var err error
	if tx != nil {
		ms, err = loadMounts(tx)
	} else {
		ms, err = c.mounts(ctx)
	}
	if err != nil {
		return err
	}
	return eachBackend(c, ms, func(m *MountEntry, pu logical.PasswordPolicyUser) error {
		st := c.mountStorage(m)
		if tx != nil {
			st = storage.Prefixed(inTx{tx}, mountStoragePrefix(m))
		}
		uses, err := pu.PasswordPolicyUses(ctx, st, name)
		if err == nil && len(uses) > 0 {
			err = &PermissionError{Operation: req.Operation, Path: "sys/policies/password/" + name,
				Reason: "a database connection or static role makes its passwords by this policy, so changing it also needs the sudo capability"}
		}
		return err
	})
}

// passwordPolicyExists is the existence check of a write, so that the ACL
// tells creating a password policy from replacing one.
func (c *Core) passwordPolicyExists(ctx context.Context, name string) (bool, error) {
	var ok bool
	err := c.store.View(ctx, func(tx storage.Tx) error {
		raw, err := tx.Get(passwordPolicyPrefix + name)
		ok = raw != nil
		return err
	})
	return ok, err
}

// generatePassword draws a password from the named policy.
func (c *Core) generatePassword(ctx context.Context, name string) (string, error) {
	var text string
	var ok bool
	err := c.store.View(ctx, func(tx storage.Tx) error {
		var err error
		text, ok, err = loadPasswordPolicy(tx, name)
		return err
	})
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrNoPasswordPolicy, name)
	}
	p, err := passwordpolicy.Parse(text, c.rand)
	if err != nil {
		return "", fmt.Errorf("password policy %q: %w", name, err)
	}
	pw, err := p.Generate(c.rand)
	if err != nil {
		return "", fmt.Errorf("failed to generate password from policy %q: %w", name, err)
	}
	return pw, nil
}

// PasswordPolicyWriter tells who last wrote a password policy
// (logical.PasswordPolicyWriters); a policy that does not exist is an
// error wrapping ErrNoPasswordPolicy.
func (s *systemView) PasswordPolicyWriter(ctx context.Context, in storage.Tx, name string) (bool, string, error) {
	var sp storedPasswordPolicy
	var ok bool
	read := func(tx storage.Tx) error {
		var err error
		sp, ok, err = loadPasswordPolicyRecord(tx, name)
		return err
	}
	var err error
	if in != nil {
		err = read(storage.Unprefixed(in))
	} else {
		err = s.c.store.View(ctx, read)
	}
	if err == nil && !ok {
		err = fmt.Errorf("%w: %q", ErrNoPasswordPolicy, name)
	}
	return sp.Sudo, sp.Writer, err
}

// GeneratePasswordFromPolicy lets a backend generate passwords by a
// password policy (logical.PasswordGenerator).
func (s *systemView) GeneratePasswordFromPolicy(ctx context.Context, name string) (string, error) {
	return s.c.generatePassword(ctx, name)
}

// inTx is a storage.Store whose every transaction is tx, so that what a
// backend reads through it is read in the caller's transaction.
type inTx struct{ tx storage.Tx }

func (s inTx) View(_ context.Context, fn func(storage.Tx) error) error   { return fn(s.tx) }
func (s inTx) Update(_ context.Context, fn func(storage.Tx) error) error { return fn(s.tx) }
