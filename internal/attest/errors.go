package attest

import (
	"errors"

	"github.com/edgevault/edgevault/internal/attest/jointoken"
)

// Join token errors, returned by Enroll (and the JoinToken attestor). They
// are the jointoken package's sentinels, so errors.Is matches either name.
var (
	// ErrTokenUnknown: the token is malformed or no record matches it.
	ErrTokenUnknown = jointoken.ErrTokenUnknown
	// ErrTokenExpired: the token's lifetime is over.
	ErrTokenExpired = jointoken.ErrTokenExpired
	// ErrTokenUsed: the token was already redeemed (a replay).
	ErrTokenUsed = jointoken.ErrTokenUsed
	// ErrTokenZone: the token was issued for another zone.
	ErrTokenZone = jointoken.ErrTokenZone
)

// Certificate errors, returned by CA.Verify and Service.Authorize.
var (
	// ErrCertZone is returned for a certificate not issued by the verifying
	// zone's CA: signed by another zone's CA (or any other CA), or naming
	// another zone or trust domain in its SPIFFE ID.
	ErrCertZone = errors.New("certificate was not issued by this zone's CA")
	// ErrCertExpired is returned for a certificate past its NotAfter.
	ErrCertExpired = errors.New("certificate expired")
	// ErrCertNotYetValid is returned for a certificate before its NotBefore
	// (which is already backdated by the clock skew allowance).
	ErrCertNotYetValid = errors.New("certificate not yet valid")
	// ErrCertInvalid is returned for a certificate that is malformed for an
	// agent: no chain, no or several SPIFFE IDs, wrong key type, missing
	// clientAuth usage, a bad signature.
	ErrCertInvalid = errors.New("invalid agent certificate")
	// ErrNoCA is returned when a zone has no agent CA yet and the operation
	// must not create one (Authorize).
	ErrNoCA = errors.New("zone has no agent CA")
)

// Agent errors, returned by the registry and by Authorize.
var (
	// ErrAgentUnknown is returned for an agent ID with no record (never
	// enrolled, or deleted).
	ErrAgentUnknown = errors.New("agent unknown")
	// ErrAgentQuarantined is returned by Authorize for a quarantined agent,
	// and by Enroll when re-enrolling a quarantined agent ID.
	ErrAgentQuarantined = errors.New("agent quarantined")
	// ErrAgentRevoked is returned by Authorize for a revoked agent, and by
	// Enroll when re-enrolling a revoked agent ID.
	ErrAgentRevoked = errors.New("agent revoked")
	// ErrCertSuperseded is returned by Authorize for a certificate that is
	// valid but no longer the agent's current one (renewed or re-enrolled).
	ErrCertSuperseded = errors.New("certificate superseded by a newer one")
	// ErrInvalidAgentID is returned for an agent ID that breaks the syntax
	// rule of ValidateAgentID.
	ErrInvalidAgentID = errors.New("invalid agent ID")
)

// Other errors.
var (
	// ErrInvalidKey is returned when the agent's public key is not an
	// ECDSA P-256 key, or its CSR is malformed or badly signed.
	ErrInvalidKey = errors.New("invalid agent public key")
	// ErrInvalidConfig is returned by New and by Issue for bad settings; the
	// message names the field.
	ErrInvalidConfig = errors.New("invalid attest configuration")
	// ErrCorrupt is returned when a stored CA or agent record cannot be
	// parsed.
	ErrCorrupt = errors.New("corrupt attest record")
	// ErrAttestation is returned by attestors when evidence is refused for a
	// reason other than the join token sentinels.
	ErrAttestation = errors.New("attestation failed")
	// ErrReattestFailed marks re-attestation evidence that speaks against
	// the agent (a wrong quote, PCR values outside the policy, an EK no
	// longer allowed): the agent is quarantined.
	ErrReattestFailed = errors.New("re-attestation failed")
)
