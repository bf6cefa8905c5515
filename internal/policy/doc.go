// Package policy implements Vault's ACL policy language and the store that
// keeps policies.
//
// A policy is an HCL (or JSON) document of path blocks:
//
//	path "secret/data/app/*" {
//	  capabilities = ["read", "list"]
//	}
//
// Each block names a path pattern and the capabilities it grants: create,
// read, update, patch, delete, list, sudo, or deny. A pattern is either exact
// ("secret/data/app/db"), a prefix glob ending in "*" ("secret/data/app/*"),
// or contains "+" segments that match exactly one path segment each
// ("secret/data/+/db"); "+" and a trailing "*" may be combined.
//
// Policies are attached to tokens by name. At request time the token's
// policies are compiled into one ACL: rules on the same pattern are merged
// (capabilities are unioned, but a deny on that pattern in any policy wins),
// then the single most specific rule matching the request path decides, with
// Vault's documented priority: an exact pattern beats every glob; among
// globs, the one whose first wildcard comes later wins, then one not ending
// in "*", then the one with fewer "+" segments, then the longer, then the
// lexically greater. A deny on the winning rule denies everything; a path no
// rule matches is denied.
//
// Two policies are built in. "root" grants everything, including sudo; it
// has no text (reading it returns an empty policy, as Vault does) and can be
// neither changed nor deleted. "default" is written by
// Store.EnsureDefault, may be edited, and cannot be deleted.
//
// The Store keeps policy text in a storage.Backend (in the server, a
// barrier-encrypted view) and caches compiled ACLs by policy set; every
// change through the Store invalidates the cache. Handler serves Vault's
// sys/policies/acl and legacy sys/policy endpoints on top of a Store.
package policy
