package database

import (
	"context"

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
