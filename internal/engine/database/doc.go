// Package database is edgevault's database secrets engine for PostgreSQL:
// a Vault-compatible subset of Vault's database engine with its
// postgresql-database-plugin, served as a logical.Handler over one mount's
// storage view.
//
// # API (paths relative to the mount, field names as Vault's)
//
//	config/:name       write/read/delete; LIST config/   a connection: plugin_name
//	                   ("postgresql-database-plugin"), connection_url (with
//	                   {{username}} and {{password}} placeholders), username,
//	                   password (write-only), allowed_roles, verify_connection,
//	                   root_rotation_statements, max_open_connections,
//	                   max_idle_connections, max_connection_lifetime
//	rotate-root/:name  write: sets a new random root password in PostgreSQL and
//	                   stores it; the old one stops working
//	reset/:name        write: closes the connection pool of the config
//	roles/:name        write/read/delete; LIST roles/   db_name,
//	                   creation_statements, revocation_statements,
//	                   renew_statements, default_ttl, max_ttl
//	creds/:name        read: a new PostgreSQL user {username, password} with a
//	                   lease (LeaseID, LeaseDuration, Renewable)
//
// # Dynamic users and leases
//
// creds/:role generates a user name (v-<role>-<random>-<unix time>, at most 63
// bytes) and a 24-character random password, and runs the role's
// creation_statements in one transaction with {{name}} (also {{username}}),
// {{password}} and {{expiration}} (the lease end, "2006-01-02
// 15:04:05-0700") substituted, so the user carries VALID UNTIL = lease end:
// PostgreSQL itself refuses the password after that even if edgevault is
// down. The values substituted are generated here and contain only
// [A-Za-z0-9._-] and digits, so they need no escaping inside '…' or "…".
//
// Before the credentials are returned the lease is handed to
// Options.Leases (the lease manager), which must make it durable; if that
// fails the user is dropped again and the request fails, so no user exists
// without a lease record. The lease carries LeaseData (JSON) which the lease
// manager gives back to Revoke and Renew. Revoke runs the role's current
// revocation_statements (the ones saved in the lease when the role is gone),
// or by default, in one transaction, REASSIGN OWNED to the root user and DROP
// OWNED (when the root user may; otherwise, for a CREATEROLE root, REVOKE ALL
// on every table, sequence, function and schema the user holds grants on and
// on the database) and DROP ROLE, then terminates the user's open sessions
// (best effort: needs superuser or pg_signal_backend). Revoking a user that no
// longer exists succeeds, so retries are safe. Renew runs renew_statements or
// ALTER ROLE … VALID UNTIL.
//
// # Connections
//
// Each config has at most one pgxpool, opened lazily and closed when the
// config is written, deleted, reset or its root password rotated. The
// connection string is parsed with a placeholder standing for the password,
// which is then set on the parsed configuration: the password is never part
// of a string that a parser could echo in an error.
//
// # Storage layout
//
//	config/<name>   the connection (JSON, including the root password; the
//	                view is encrypted by the barrier)
//	role/<name>     the role (JSON)
//
// # Errors and secrets
//
// Bad input returns errors matching logical.ErrInvalidRequest naming the
// field. Failures to reach PostgreSQL match ErrConnect and name the config;
// failing SQL matches ErrStatement. Every error text coming from pgx or the
// server is scrubbed of the passwords involved before it is returned or
// logged; passwords never appear in logs.
package database
