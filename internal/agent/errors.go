package agent

import "errors"

// Errors of start-up (Run).
var (
	// ErrStateDir means StateDir cannot be used: not a directory, or
	// accessible by group or others (it holds the agent's key).
	ErrStateDir = errors.New("agent: unusable state directory")
	// ErrIdentity means the stored identity (identity.pem) cannot be read
	// or belongs to another zone; the message says which.
	ErrIdentity = errors.New("agent: unusable stored identity")
	// ErrIdentitySealed means the stored identity is sealed to another TPM
	// or boot state: the agent enrolls again with its TPM.
	ErrIdentitySealed = errors.New("agent: stored identity sealed to another TPM or boot state")
)

// Errors of enrollment and renewal, logged while the agent retries.
var (
	// ErrNoJoinToken means the agent has no identity and no join token to
	// enroll with: it serves its cache (if any) and reports isolated.
	ErrNoJoinToken = errors.New("agent: not enrolled and no join token configured")
	// ErrEnroll means the server refused the enrollment or renewal with a
	// 4xx (a used, expired or foreign join token, a quarantined agent); the
	// message carries the server's reason. A refused enrollment is not
	// retried: the agent stays isolated until restarted with a new token.
	ErrEnroll = errors.New("agent: enrollment refused")
)

// ErrControlPlaneUnreachable is what the local API answers (503) for a
// request it cannot serve from the cache while the server is unreachable.
var ErrControlPlaneUnreachable = errors.New("control plane unreachable")
