// Package pki is edgevault's certificate authority engine: a subset of
// Vault's PKI secrets engine API, served as a logical.Handler over one
// mount's storage view, with one CA per mount.
//
// # Model
//
// A mount gets its CA either by generating a self-signed root
// (root/generate/internal) or by generating an intermediate key and CSR
// (intermediate/generate/internal), having a parent sign it (for example
// another mount's root/sign-intermediate) and importing the result
// (intermediate/set-signed). Roles (roles/:name) say which names a
// certificate may carry (allowed_domains with allow_bare_domains,
// allow_subdomains, allow_glob_domains; allow_localhost; allow_ip_sans;
// allow_any_name), its key (key_type rsa, ec or ed25519 and key_bits; "any"
// for sign only), its usages and its lifetime. Certificates are short-lived
// by default: a role's ttl is 1h and its max_ttl 24h unless set, and a
// request whose ttl is above max_ttl is refused rather than shortened.
// issue/:role makes a key and a certificate; sign/:role certifies the key of
// a CSR. revoke adds a serial to the CRL; crl returns a CRL signed by the CA
// listing every revoked serial; tidy drops records of long-expired
// certificates.
//
// Request and response fields use Vault's names. Fields an endpoint does not
// know are ignored with a warning, as Vault does; fields that would change
// the certificate and that this engine does not implement (uri_sans,
// other_sans, not_after, user_ids) are refused.
//
// # Storage layout
//
//	ca                  the CA: certificate, PKCS#8 key and parent chain (JSON)
//	pending             an intermediate key awaiting set-signed (JSON)
//	roles/<name>        a role (JSON, Vault field names)
//	certs/<serial>      an issued certificate (DER); serial as aa-bb-cc
//	revoked/<serial>    a revocation: time and the certificate's expiry (JSON)
//	crl                 the last signed CRL (DER in JSON) and its NextUpdate
//	crl_number          the last CRL number, never reset
//
// The parsed CA is cached in memory, keyed by its stored bytes, so issuing
// costs one storage Get of the CA record and one of the role, the signature,
// and one Put of the certificate. A role with no_store skips that Put
// (Vault's no_store): the certificate can then still be revoked by serial
// through Backend.Revoke, but cert/:serial cannot return it.
//
// The CRL is rebuilt lazily: a revocation writes its record and deletes the
// cached CRL in one transaction; the next crl read signs a new CRL (with a
// CRL number one above the last) from all revocation records. Revocations
// hold a shared lock and a rebuild an exclusive one, so a rebuilt CRL never
// misses a revocation that committed before it was stored.
//
// # Raw responses
//
// Vault answers ca, crl (DER), ca/pem, ca_chain and crl/pem (PEM) with a raw
// body, not JSON: these responses set logical.Response.Raw and ContentType,
// which the HTTP layer sends as they are. Data still holds {"certificate":
// "<PEM>"}, as cert/ca, cert/ca_chain and cert/crl answer in JSON.
//
// # Offline sub-CAs for agents
//
// A role with allow_offline_sub_ca (default false) lets an enrolled edge
// agent obtain a sub-CA for it (Backend.SignAgentSubCA, served by the HTTP
// layer at sys/agents/pki-sub-ca over mTLS): a CA certificate for the
// agent's key with path length 0, critical name constraints permitting only
// the role's names (IP addresses only with allow_ip_sans; no e-mail address
// or URI), the role's extended key usages and a lifetime of
// offline_sub_ca_ttl (default 24h, at most 7 days, never past the mount's
// CA). It is stored under certs/ like any certificate, so revoke, the CRL,
// certs and tidy cover it. The agent issues from it while the server is
// unreachable with LocalIssuer, which runs this package's issue checks on
// the role's rules (Constraints) — the same code as issue/:role. The name
// constraints bound what a stolen agent key can sign; revocation reaches
// relying parties only through the CRL (docs/pki.md has the trade-off).
//
// # Leases
//
// With a role's generate_lease, issue and sign set Response.LeaseDuration to
// the certificate's ttl (leases are not renewable). The lease keeps
// LeaseDataFor(resp) (serial_number and expiration) as its data; the lease
// manager's revoker calls Backend.RevokeLease with it, or Backend.Revoke with
// the serial alone. Both are idempotent and record serials of unstored
// certificates, so a no_store certificate still reaches the CRL.
package pki
