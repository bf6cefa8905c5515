// Package attest admits edge agents into trust zones and tells the server,
// on every connection, whether an agent is still welcome.
//
// # Trust model
//
// Each zone has its own agent certificate authority: an ECDSA P-256 key and a
// self-signed certificate, created on first use and stored (key included) in
// the zone's encrypted store at attest/ca, so it is protected by the zone's
// key hierarchy and destroyed with the zone. A certificate is checked against
// the CA of the zone its SPIFFE ID names and nothing else: zone A's CA cannot
// vouch for an agent of zone B (ErrCertZone), which keeps one zone's
// compromise from spreading. The CA certificate carries an X.509 URI name
// constraint for the trust domain; X.509 cannot constrain URI paths, so the
// /zone/<zone>/ part is enforced by CA.Verify.
//
// # Enrollment
//
//	agent: key pair (P-256), evidence ─► Attestor ─► Identity ─► CA.Issue ─► registry record
//
// An Attestor turns evidence into an Identity (agent ID, zone, method,
// strength, claims). The first one, JoinToken, redeems a single-use join
// token (package jointoken) and yields a weak identity: it proves an operator
// let the node in, not what the node is. A TPM attestor (a later package)
// will yield hardware identities; it needs a challenge round (credential
// activation), which the optional Challenger interface provides. Service.Admit
// runs any attestor; Service.Enroll is Admit with JoinToken.
//
// The agent certificate is short-lived (DefaultCertTTL, one hour), has the
// clientAuth usage and exactly one URI SAN, the agent's SPIFFE ID
//
//	spiffe://<trust domain>/zone/<zone>/agent/<agent ID>
//
// ("root" stands for the root zone ""), and a NotBefore backdated by the
// clock skew allowance (DefaultClockSkew) so relying parties whose clocks are
// behind accept it at once. Agents renew with Service.Renew before expiry.
//
// # Registry and authorization
//
// Each enrolled agent has a record at attest/agents/<id> in its zone's store:
// attestation method and strength, current certificate serial and expiry,
// last seen, the sync watermark it acked, and a status. Service.Authorize
// accepts a certificate only if the zone CA issued it, it is within its
// validity, and the agent's record exists, is active, and names this
// certificate's serial; so quarantine, revocation, deletion and renewal all
// take effect at the next connection.
//
// # Concurrency
//
// storage.Backend has no compare-and-swap, so single-use tokens and agent
// record updates are guarded by in-process lock stripes: as with the zone
// package, one server process (a Raft leader) writes a zone.
package attest
