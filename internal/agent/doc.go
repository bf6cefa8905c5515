// Package agent is the edge agent runtime: it enrolls with the control plane
// of one trust zone, follows the zone's sync stream into its encrypted cache
// (package cache), and serves local applications a Vault-compatible read API
// from that cache, whether or not the control plane is reachable.
//
// # Modes
//
// The agent is online while its sync stream is connected (the catch-up has
// been applied and the server's heartbeats arrive), degraded when the stream
// is down but the cache holds entries, and isolated when the stream is down
// and the cache is empty (for instance an agent that has never reached the
// server). Reads are served from memory in every mode; only the answer
// changes: online, a cached secret is served as Vault would serve it;
// degraded, it is served while it is within its max_stale, with the header
// X-Edgevault-Stale (seconds since it was last known current) and a warning,
// and refused with 503 past it. The read path never waits on the network, so
// a refusal is as fast as a hit.
//
// # Local credentials
//
// Local applications authenticate with the agent's local token (a random
// token in StateDir/local-token, mode 0600) sent as X-Vault-Token; reads of
// the cache need it. Any request the agent does not answer itself (writes,
// other engines, a read with another token) is passed to the server while
// online, with the application's own X-Vault-Token and X-Vault-Namespace, and
// refused with 503 "control plane unreachable" otherwise: writes are never
// queued. The local token is never forwarded. Proxied requests do not carry
// the agent's client certificate, so an application cannot act as the agent
// (renew its certificate, open its stream). Checking the peer credentials of
// unix socket clients (SO_PEERCRED) instead of, or besides, the token is a
// later option.
//
// A read with the local token that misses the cache while online answers
// 404: the cache then holds everything the zone lets agents cache, so the
// secret does not exist or is not cacheable (read it through the agent with
// a server token, which is proxied).
//
// # Cache layout
//
// A secret "<mount><key>" (say "secret/app/db") is cached at that path, one
// cache version per KV version the stream delivered; versions the server no
// longer lists are pruned on the next write. Its KV metadata (what GET
// <mount>/metadata/<key> returns) is cached at "/metadata/<mount><key>" as a
// single version; no local request can name such a path. A Revoke purges
// both prefixes; a Resync resets the cache before its snapshot is applied.
//
// # Identity
//
// The agent's identity is a P-256 key and the certificate chain the server
// issued for it (SPIFFE ID spiffe://<td>/zone/<zone>/agent/<id>), kept
// together in StateDir/identity.pem (0600) and replaced atomically. The
// first start enrolls with the join token (a weak attestation: whoever holds
// the token can enroll; a TPM attestor will replace it). The certificate is
// renewed over mTLS at two thirds of its lifetime with a fresh key; the sync
// stream reads the current certificate at each connection. An expired
// certificate stops the sync, never local serving.
//
// # Freshness
//
// Each cached entry may be served for its max_stale past the last time it was
// known current. While online the agent records that time with
// cache.MarkSynced every second, conservatively: a connected stream has heard
// from the server within its timeout, so the cache is known current as of
// now minus that timeout.
package agent
