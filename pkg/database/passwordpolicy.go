package database

import (
	"context"

	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
)

// PasswordPolicyUses lists the connections and static roles whose
// passwords are made by the named password policy
// (logical.PasswordPolicyUser): config/<name> for a connection's
// password_policy (its rotate-root and its roles' passwords), and
// static-roles/<name> for a static role's credential_config.
func (b *Backend) PasswordPolicyUses(ctx context.Context, st storage.Store, policy string) ([]string, error) {
	var uses []string
	err := st.View(ctx, func(tx storage.Tx) error {
		keys, err := tx.List(configPrefix)
		if err != nil {
			return err
		}
		for _, k := range keys {
			var cfg dbConfig
			found, err := getJSON(tx, k, &cfg)
			if err != nil {
				return err
			}
			if found && cfg.PasswordPolicy == policy {
				uses = append(uses, k)
			}
		}
		statics, err := allStatic(tx)
		if err != nil {
			return err
		}
		for _, s := range statics {
			if s.role.PasswordPolicy == policy {
				uses = append(uses, "static-roles/"+s.name)
			}
		}
		return nil
	})
	return uses, err
}

// checkPolicyWriter refuses to have a connection or static role name a
// password policy (newly, or instead of another) that a token without
// sudo on its path wrote last, unless that token is the caller's own.
// Once named, the policy takes sudo to rewrite (core's
// checkPasswordPolicyUsers); before, any token that may write password
// policies could make it weak (four of "a") in the moments before an
// operator names it, and so choose the admin's next password at
// rotate-root and every role's after it. A policy written before lessor
// recorded its writers counts as written without sudo. With tx (a
// transaction of req.Storage) the policy is read in it: the transaction
// that stores the name checks again, as a rewrite could commit between an
// earlier check and the name.
func checkPolicyWriter(ctx context.Context, req *logical.Request, tx storage.Tx, policy string) error {
	pw, ok := req.System.(logical.PasswordPolicyWriters)
	if !ok {
		return nil
	}
	sudo, writer, err := pw.PasswordPolicyWriter(ctx, tx, policy)
	if err != nil {
		return err
	}
	if sudo || (writer != "" && writer == req.TokenAccessor) {
		return nil
	}
	return logical.Errorf("password policy %q was last written by another token without sudo on sys/policies/password/%s (or by an older lessor): write it again with sudo, or with this token, before naming it", policy, policy)
}
