# The default policy: attached to every token unless it is created with
# -no-default-policy. It lets a token look after itself and the leases it
# holds, and nothing else. It may be edited but not deleted.

# Look up the calling token's own properties.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Renew the calling token.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# Revoke the calling token (and its children).
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# Ask what the calling token may do on a path.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Renew a lease the calling token created. Lease ids are not secret (any
# database user can read them in role comments), so this grants no other
# lease: renewing one needs update on sys/leases/renew/<lease id>.
path "sys/leases/renew" {
  capabilities = ["update"]
}

# Look up a lease the calling token created; any other needs update on
# sys/leases/lookup/<lease id>.
path "sys/leases/lookup" {
  capabilities = ["update"]
}

# Hash data with a SHA-2 function.
path "sys/tools/hash" {
  capabilities = ["update"]
}
