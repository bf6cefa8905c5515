package policy

// DefaultPolicyText is the "default" policy written by EnsureDefault. It
// gives every token what Vault's default policy gives: managing itself,
// checking its own capabilities, renewing and looking up leases, its
// cubbyhole, response wrapping and the hashing tool. Vault's templated
// identity paths are left out: edgevault has no identity store.
const DefaultPolicyText = `# The default policy: what any token needs to manage itself.

# A token may read its own properties, renew itself and revoke itself.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# A token may ask what it can do on a path.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# A token may see the ACL its policies add up to (used by the UI).
path "sys/internal/ui/resultant-acl" {
  capabilities = ["read"]
}

# Leases handed to a token may be renewed and looked up by lease_id.
path "sys/renew" {
  capabilities = ["update"]
}
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/lookup" {
  capabilities = ["update"]
}

# Each token has its own cubbyhole.
path "cubbyhole/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Response wrapping: wrap a value, look a wrapping token up, unwrap it.
path "sys/wrapping/wrap" {
  capabilities = ["update"]
}
path "sys/wrapping/lookup" {
  capabilities = ["update"]
}
path "sys/wrapping/unwrap" {
  capabilities = ["update"]
}

# General-purpose hashing.
path "sys/tools/hash" {
  capabilities = ["update"]
}
path "sys/tools/hash/*" {
  capabilities = ["update"]
}

# A requester may check on its own approval (control group) request.
path "sys/control-group/request" {
  capabilities = ["update"]
}
`
