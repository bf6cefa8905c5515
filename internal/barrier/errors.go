package barrier

import "errors"

// Errors returned by this package. Match them with errors.Is; most are
// returned wrapped with the operation and the storage path.
//
// The sentinels that a client can see through the HTTP API carry Vault's own
// wording so httpapi can pass them on unchanged.
var (
	// ErrSealed is returned by every storage method, Rotate and KeyStatus
	// while the barrier is sealed. httpapi maps it to 503.
	ErrSealed = errors.New("Vault is sealed")
	// ErrNotInitialized is returned by Unseal and the Seal before the
	// barrier has been initialized.
	ErrNotInitialized = errors.New("Vault is not initialized")
	// ErrAlreadyInitialized is returned by Initialize and Seal.Init when a
	// keyring already exists.
	ErrAlreadyInitialized = errors.New("Vault is already initialized")
	// ErrBadRootKey is returned when a root key has the wrong length or does
	// not decrypt the stored keyring. The barrier stays as it was.
	ErrBadRootKey = errors.New("barrier: wrong root key")
	// ErrReservedKey is returned for keys under ReservedPrefix, which only the
	// barrier itself writes.
	ErrReservedKey = errors.New("barrier: key is reserved for the barrier")

	// ErrMalformed is returned when a stored value is not a well-formed
	// envelope (too short, unknown format version).
	ErrMalformed = errors.New("barrier: malformed ciphertext envelope")
	// ErrUnknownTerm is returned when an envelope names a key term the
	// keyring does not hold.
	ErrUnknownTerm = errors.New("barrier: unknown key term")
	// ErrDecrypt is returned when an envelope fails authentication: it was
	// tampered with, written under another path, or under another key.
	ErrDecrypt = errors.New("barrier: ciphertext failed authentication")
	// ErrMalformedKeyring is returned when a decrypted keyring cannot be parsed.
	ErrMalformedKeyring = errors.New("barrier: malformed keyring")

	// ErrInvalidSealConfig is returned by Seal.Init for share/threshold
	// values Vault would reject; the wrapped message names the problem in
	// Vault's words.
	ErrInvalidSealConfig = errors.New("invalid seal configuration")
	// ErrInvalidShare is returned by Seal.SubmitShare for an unseal key of
	// the wrong length.
	ErrInvalidShare = errors.New("invalid unseal key")
)

// ErrSealTypeMismatch is returned by Seal.AutoUnseal when storage was
// initialized with another seal type than the one configured.
var ErrSealTypeMismatch = errors.New("barrier: configured seal type does not match the stored seal")
