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

# Renew a lease. Renewing needs the lease id, which only its holder has.
path "sys/leases/renew" {
  capabilities = ["update"]
}

# Look up a lease by its id.
path "sys/leases/lookup" {
  capabilities = ["update"]
}

# Hash data with a SHA-2 function.
path "sys/tools/hash" {
  capabilities = ["update"]
}
